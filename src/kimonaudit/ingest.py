"""Bulk ingest of NDJSON (one event per line) through the facade, streaming.

A file is read twice, a line at a time from the binary stream, so its size
does not matter:

1. check: every non-blank line is decoded and validated (msgspec's C path,
   kimonaudit.core.decode). Problems are collected, each naming its line
   number and the byte offset where the line starts; if there is any,
   nothing is appended. A line that is not UTF-8 stops the check at once
   (the file is not text; listing its every line helps nobody).
2. append: the same bytes are read again and appended in batches of
   `batch_size`, each batch atomic, as they are read.

So "a bad line appends nothing" holds for a whole file. A stream that cannot
be read twice (stdin) is spooled to a temporary file during the check.
Should the file change between the two passes, the append stops at the
first line that no longer validates and says how much was appended.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from kimonaudit.core.decode import decode_line
from kimonaudit.core.events import Event
from kimonaudit.errors import InvalidInput
from kimonaudit.service import AuditLog

MAX_REPORTED = 20
#: A longer line cannot be an event (payloads stop at 32 KiB): it is
#: reported, and never held in memory whole.
MAX_LINE_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"

Progress = Callable[[int, int | None], None]


class _NotText(Exception):
    pass


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset of the line, bytes) for each line; bytes is
    None for a line longer than MAX_LINE_BYTES (skipped unread)."""
    offset = 0
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        start = offset
        offset += len(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # skip the rest of the line
                more = stream.readline(MAX_LINE_BYTES)
                offset += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield number, start, None
            continue
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]  # a UTF-8 byte order mark, as some editors write
        yield number, start, line


def _event(number: int, start: int, line: bytes | None) -> Event | None:
    """The event of one line, None for a blank line; InvalidInput naming
    the line, _NotText for bytes that are not UTF-8."""
    where = f"line {number} (byte {start})"
    if line is None:
        raise InvalidInput(f"{where}: longer than {MAX_LINE_BYTES:,} bytes; not an event")
    if not line.strip():
        return None
    try:
        return decode_line(line)
    except InvalidInput as exc:
        if exc.message.startswith("not UTF-8"):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise _NotText(
                    f"{where}: not UTF-8 text (byte 0x{line[bad.start]:02X} at byte "
                    f"{start + bad.start}); NDJSON files must be UTF-8"
                ) from None
        raise InvalidInput(f"{where}: {exc.message}") from None


def check(stream: IO[bytes], progress: Progress | None = None) -> int:
    """Validate every line of `stream`; return the number of events. Raise
    one InvalidInput listing up to MAX_REPORTED problems, "; "-separated on
    one line ("nothing was appended: line 2 (byte 57): ...")."""
    problems: list[str] = []
    events = 0
    done = 0
    for number, start, line in _lines(stream):
        try:
            if _event(number, start, line) is not None:
                events += 1
        except _NotText as exc:
            problems.append(str(exc))
            break
        except InvalidInput as exc:
            problems.append(exc.message)
            if len(problems) >= MAX_REPORTED:
                problems.append(f"(stopped after {MAX_REPORTED} problems)")
                break
        if progress is not None and start - done >= 1 << 20:
            done = start
            progress(done, None)
    if progress is not None:
        progress(stream.tell() if stream.seekable() else done, None)
    if problems:
        raise InvalidInput("nothing was appended: " + "; ".join(problems))
    return events


def append(
    log: AuditLog,
    tenant_id: str,
    stream: IO[bytes],
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Append every line of an already checked `stream` in atomic batches."""
    appended = events = 0
    batch: list[Event] = []

    def flush(upto: int) -> None:
        nonlocal appended
        before = log.store.tree_state(tenant_id).size
        receipts = log.append_validated(tenant_id, batch)
        # Retried ids get their original receipt, below `before`.
        appended += len({r.seq for r in receipts if r.seq >= before})
        batch.clear()
        if progress is not None:
            progress(upto, None)

    for number, start, line in _lines(stream):
        try:
            event = _event(number, start, line)
        except (InvalidInput, _NotText) as exc:
            raise InvalidInput(
                f"the file changed while it was read: {exc}; {appended} events of the "
                f"lines before were appended"
            ) from None
        if event is None:
            continue
        events += 1
        batch.append(event)
        if len(batch) >= batch_size:
            flush(start + (len(line) if line else 0))
    if batch:
        flush(stream.tell() if stream.seekable() else 0)
    return {
        "tenant_id": tenant_id,
        "appended": appended,
        "duplicates": events - appended,
        "tree_size": log.store.tree_state(tenant_id).size,
    }


def ingest_stream(
    log: AuditLog,
    tenant_id: str,
    stream: IO[bytes],
    batch_size: int = 1000,
    checking: Progress | None = None,
    appending: Progress | None = None,
) -> dict[str, Any]:
    """Check the whole of `stream`, then append it (see the module docstring).
    A stream that cannot seek is spooled to a temporary file first."""
    log.get_tenant(tenant_id)
    if stream.seekable():
        origin = stream.tell()
        check(stream, checking)
        stream.seek(origin)
        return append(log, tenant_id, stream, batch_size, appending)
    with tempfile.TemporaryFile(prefix="kimonaudit-ingest-") as spool:
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        return ingest_stream(log, tenant_id, spool, batch_size, checking, appending)


def ingest_lines(
    log: AuditLog,
    tenant_id: str,
    lines: Iterable[str | bytes],
    batch_size: int = 1000,
) -> dict[str, Any]:
    """`ingest_stream` over lines in memory (str lines are encoded as UTF-8)."""
    data = b"".join(
        (line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line).rstrip(b"\n")
        + b"\n"
        for line in lines
    )
    return ingest_stream(log, tenant_id, io.BytesIO(data), batch_size)


def size_of(stream: IO[bytes]) -> int | None:
    """The byte size of a regular file, None for a pipe or a terminal."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    import stat

    return st.st_size if stat.S_ISREG(st.st_mode) else None
