"""NDJSON ingest (issue 11 item 3): streamed in two passes, every bad line
named with its line number and byte offset, nothing appended when any line
is bad, one error line and exit 2 from the CLI, never a traceback."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

import kimonaudit
from kimonaudit.errors import InvalidInput
from kimonaudit.ingest import MAX_LINE_BYTES, append, ingest_lines, ingest_stream
from tests.helpers import event
from tests.test_cli import kimon


@pytest.fixture
def log(tmp_path: Path) -> Any:
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'i.db'}", key_file=str(tmp_path / "i.key"))
    yield log
    log.close()


def ndjson(n: int, start: int = 0) -> bytes:
    return b"".join(json.dumps(event(i, id=f"ev-{i}")).encode() + b"\n" for i in range(start, n))


def size(log: Any, tenant: str) -> int:
    return log.store.tree_state(tenant).size


class OneWay(io.RawIOBase):
    """A stream that cannot seek, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self.inner.read(min(len(b), 4096))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_a_file_streams_in_batches(log: Any) -> None:
    """2,500 lines go in as three atomic batches; a second run appends nothing."""
    t = log.create_tenant("acme").id
    base = size(log, t)
    seen: list[int] = []
    summary = ingest_stream(
        log, t, io.BytesIO(ndjson(2500)), 1000, appending=lambda d, _: seen.append(d)
    )
    assert summary["appended"] == 2500 and summary["duplicates"] == 0
    assert size(log, t) == base + 2500
    assert len(seen) == 3 and seen == sorted(seen)  # progress by bytes, one step per batch
    again = ingest_stream(log, t, io.BufferedReader(OneWay(ndjson(2500))), 1000)
    assert again["appended"] == 0 and again["duplicates"] == 2500


def test_a_pipe_is_spooled_and_keeps_all_or_nothing(log: Any) -> None:
    """A stream that cannot seek is still checked whole before anything is appended."""
    t = log.create_tenant("acme").id
    base = size(log, t)
    data = ndjson(1500) + b'{"action": "x"}\n'
    with pytest.raises(InvalidInput, match=r"line 1501 \(byte \d+\): action"):
        ingest_stream(log, t, io.BufferedReader(OneWay(data)), 1000)
    assert size(log, t) == base


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b'\xff\xfe{\x00"\x00', "line 1 (byte 0): not UTF-8 text (byte 0xFF at byte 0)"),
        (
            b'{"action":"ticket.viewed"}\n{"action":"ticket.viewed","id":"\xe9"}\n',
            "line 2 (byte 27): not UTF-8 text (byte 0xE9 at byte 59)",
        ),
        (b'{"action":"a.b","action":"c.d"}\n', 'line 1 (byte 0): action: duplicate key "action"'),
        (b'\n\n{"action":"ticket.viewed",}\n', "line 3 (byte 2): not JSON"),
        (b'{"action":"ticket.viewed","metadata":{"n":1e999}}\n', "metadata.n"),
        (b"x" * (MAX_LINE_BYTES + 10) + b"\n", "line 1 (byte 0): longer than 1,048,576 bytes"),
    ],
)
def test_bad_lines_are_named_and_nothing_is_appended(log: Any, data: bytes, needle: str) -> None:
    """Each problem names the line and the byte offset where it starts."""
    t = log.create_tenant("acme").id
    base = size(log, t)
    with pytest.raises(InvalidInput) as info:
        ingest_stream(log, t, io.BytesIO(ndjson(3) + data))
    # three good lines come first: line numbers move by 3, offsets by their length
    lead = len(ndjson(3))
    shifted = re.sub(
        r"line (\d+) \(byte (\d+)\)",
        lambda m: f"line {int(m[1]) + 3} (byte {int(m[2]) + lead})",
        needle,
    )
    shifted = re.sub(r"at byte (\d+)\)", lambda m: f"at byte {int(m[1]) + lead})", shifted)
    assert shifted in info.value.message
    assert info.value.message.startswith("nothing was appended: ")
    assert "\n" not in info.value.message
    assert size(log, t) == base


def test_problems_are_capped(log: Any) -> None:
    """At most 20 problems are listed."""
    t = log.create_tenant("acme").id
    with pytest.raises(InvalidInput) as info:
        ingest_lines(log, t, ["{}"] * 30)
    assert info.value.message.count("action: is required") == 20
    assert "(stopped after 20 problems)" in info.value.message


def test_blank_lines_crlf_and_a_bom_are_fine(log: Any) -> None:
    """Blank lines are skipped, CRLF endings and a leading UTF-8 BOM accepted."""
    t = log.create_tenant("acme").id
    data = b"\xef\xbb\xbf" + ndjson(2).replace(b"\n", b"\r\n") + b"\r\n  \n" + ndjson(4, 2)
    assert ingest_stream(log, t, io.BytesIO(data))["appended"] == 4


def test_a_file_that_changes_between_passes_says_so(log: Any) -> None:
    """If the second pass meets a bad line, it stops and says how much went in."""
    t = log.create_tenant("acme").id
    base = size(log, t)
    data = ndjson(5) + b"{oops\n"
    with pytest.raises(
        InvalidInput, match=r"the file changed while it was read: line 6 .* 4 events"
    ):
        append(log, t, io.BytesIO(data), batch_size=2)
    # batches before the bad line were committed (each batch is atomic on its own)
    assert size(log, t) == base + 4


@pytest.fixture
def tenant(tmp_path: Path) -> str:
    proc = kimon(tmp_path, "tenants", "create", "Acme", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def test_cli_binary_file_is_one_error_line_exit_2(tmp_path: Path, tenant: str) -> None:
    """The issue's case: a file starting with \\xff\\xfe."""
    path = tmp_path / "binary.ndjson"
    path.write_bytes(b"\xff\xfe" + '{"action": "ticket.viewed"}\n'.encode("utf-16-le"))
    proc = kimon(tmp_path, "ingest", "--tenant", tenant, str(path))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: nothing was appended: line 1 (byte 0): not UTF-8 text (byte 0xFF at byte 0); "
        "NDJSON files must be UTF-8"
    )


def test_cli_file_ingest_and_help(tmp_path: Path, tenant: str) -> None:
    """A file path works like stdin; --help states what happens to a bad file."""
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson(1200))
    proc = kimon(tmp_path, "ingest", "--tenant", tenant, str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["appended"] == 1200
    one = tmp_path / "one.ndjson"
    one.write_bytes(ndjson(5001, 5000))
    text = kimon(tmp_path, "ingest", "--tenant", tenant, str(one)).stdout
    assert text.startswith(f"appended 1 event to {tenant}")
    helptext = kimon(tmp_path, "ingest", "--help").stdout
    assert "nothing is" in helptext and "appended" in helptext and "byte offsets" in helptext
