"""Export (kimonaudit.export) on real SQLite and PostgreSQL: RFC 4180 CSV
read back with the csv module, formula neutralisation, the stable column
set, NDJSON, the snapshot an export covers, flat memory, and
`kimonaudit export` through the CLI."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit import export as export_mod
from kimonaudit.cli import cli
from kimonaudit.core.canonical import canonical_text
from kimonaudit.core.timefmt import parse_ts
from kimonaudit.errors import InvalidInput, InvalidQuery
from kimonaudit.export import CSV_COLUMNS, cell, csv_record, neutralise
from kimonaudit.service import AuditLog
from kimonaudit.views import entry_json
from tests.helpers import event


def read(log: AuditLog, tenant_id: str, q: str = "", fmt: str = "csv") -> bytes:
    return b"".join(log.export(tenant_id, q, fmt))


def parse_csv(data: bytes) -> list[list[str]]:
    assert not data.startswith(b"\xef\xbb\xbf")  # no byte order mark
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))


# -- formula neutralisation (OWASP "CSV Injection") ---------------------------------
NEUTRALISED = [
    ("=1+1", "'=1+1"),
    ('=HYPERLINK("http://x.test","y")', '\'=HYPERLINK("http://x.test","y")'),
    ("+41 22 555 0100", "'+41 22 555 0100"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("\n=1", "'\n=1"),
    ("", ""),
    ("plain", "plain"),
    ("a=1", "a=1"),
    (" =1", " =1"),  # not a formula start: spreadsheets trim nothing here
    ("'quoted", "'quoted"),
    ("＝1", "＝1"),  # fullwidth equals sign: no spreadsheet evaluates it
    ("1-2", "1-2"),
]


@pytest.mark.parametrize(("raw", "safe"), NEUTRALISED)
def test_formula_neutralisation_table(raw, safe):
    """A cell starting with = + - @ tab CR or LF gets a leading quote; nothing
    else changes."""
    assert neutralise(raw) == safe
    assert cell(raw) == safe.replace('"', '""')


@settings(max_examples=200)
@given(st.lists(st.one_of(st.text(), st.integers(), st.none()), min_size=1, max_size=8))
def test_records_read_back_with_the_csv_module(values):
    """Any values: one RFC 4180 record that csv reads back as the neutralised
    text, and that csv.writer(QUOTE_ALL) would have written byte for byte."""
    line = csv_record(values)
    assert line.endswith("\r\n")
    (row,) = list(csv.reader(io.StringIO(line, newline=""), strict=True))
    want = [neutralise("" if v is None else str(v)) for v in values]
    assert row == want
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(want)
    assert out.getvalue() == line


# -- the CSV export ------------------------------------------------------------------
HOSTILE = {
    "id": "=cmd|' -C calc'!A0",
    "target": {"type": "ticket", "id": "+1-555-0100"},
    "actor": {"id": "@agent", "type": "agent", "name": '-Ann "Lee"', "email": "=x@y.test"},
    "context": {"ip": "198.51.100.7", "user_agent": "\tEvil, Agent\r\n2", "request_id": "-r1"},
    "changes": [{"field": "subject", "from": 'Müller says "hi"', "to": "=1+1\nline 2"}],
    "metadata": {"via": "web", "note": "日本語 ✓", "n": 1.5},
}


def test_csv_is_rfc4180_with_the_documented_columns(log):
    """Header row of CSV_COLUMNS, CRLF records, every field quoted, UTF-8,
    RFC 3339 UTC timestamps ending in Z, JSON columns that parse back."""
    t = log.create_tenant("acme")
    hostile = {**event(30), **HOSTILE, "occurred_at": "2026-01-05T10:00:00+02:00"}
    log.append(t.id, [event(i) for i in range(30)] + [hostile])
    data = read(log, t.id)
    rows = parse_csv(data)
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 32 and all(len(r) == len(CSV_COLUMNS) for r in rows)
    # written exactly as csv.writer with QUOTE_ALL and CRLF would: every field quoted
    again = io.StringIO()
    csv.writer(again, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    assert again.getvalue().encode("utf-8") == data
    by_col = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    entries = {r.seq: entry_json(r, log.resolve_actor(t.id, r.actor_hash)) for r in
               log.store.iter_entries(t.id)}  # fmt: skip
    for rec in by_col:
        e = entries[int(rec["seq"])]
        assert rec["recorded_at"] == e["recorded_at"] and rec["recorded_at"].endswith("Z")
        parse_ts(rec["recorded_at"])
        assert rec["action"] == e["action"] and rec["severity"] == e["severity"]
        assert rec["security"] == str(e["security"]).lower()
        assert json.loads(rec["changes"]) == e["changes"]
        assert json.loads(rec["context"]) == e["context"]
        assert json.loads(rec["metadata"]) == e["metadata"]
        # A base64 hash that begins with "+" is neutralised like any cell.
        plus = e["leaf_hash"].startswith("+")
        assert rec["leaf_hash"] == ("'" if plus else "") + e["leaf_hash"]
        assert rec["ip"] == e["ip"]
        assert rec["actor_hash"] == e["actor"]["hash"]
    hostile = by_col[-1]
    assert hostile["occurred_at"] == "2026-01-05T08:00:00.000000Z"
    assert hostile["id"] == "'=cmd|' -C calc'!A0"
    assert hostile["target_id"] == "'+1-555-0100"
    assert hostile["actor_id"] == "'@agent"
    assert hostile["actor_name"] == '\'-Ann "Lee"'
    assert hostile["actor_email"] == "'=x@y.test"
    assert hostile["user_agent"] == "'\tEvil, Agent\r\n2"
    assert hostile["request_id"] == "'-r1"
    assert json.loads(hostile["changes"])[0]["from"] == 'Müller says "hi"'
    assert json.loads(hostile["metadata"])["note"] == "日本語 ✓"


def test_redacted_entries_and_erased_actors(log):
    """A redacted entry exports with empty payload cells and redacted=true;
    an erased actor keeps only the keyed hash."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(8)])
    log.redact(t.id, 3, "test: a legal request")
    gone = log.actor_hash(t.id, "agent_1")  # after erasure nobody can compute it
    log.erase_actor(t.id, "agent_1")
    rows = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in parse_csv(read(log, t.id))[1:]]
    red = rows[3]
    assert red["redacted"] == "true" and red["redaction_reason"] == "test: a legal request"
    assert red["changes"] == red["context"] == red["metadata"] == red["ip"] == ""
    assert rows[2]["redacted"] == "false" and rows[2]["redaction_reason"] == ""
    lines = [json.loads(x) for x in read(log, t.id, fmt="ndjson").decode().splitlines()]
    assert lines[3]["redacted"] is True
    assert lines[3]["redaction"]["reason"] == "test: a legal request"
    assert lines[3]["redaction"]["redacted_at"].endswith("Z")
    assert lines[2]["redacted"] is False and lines[2]["redaction"] is None
    erased = [r for r in rows if r["actor_hash"] == gone]
    assert erased and all(
        r["actor_id"] == r["actor_name"] == r["actor_email"] == "" for r in erased
    )
    assert any(r["actor_id"] == "agent_2" for r in rows)


QUERIES = ["", "action:ticket.*", "pending", "refund", "-pending is:security", "created:>-1h"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_an_export_holds_what_search_finds_oldest_first(log, clock, monkeypatch, fmt):
    """For each query the export's rows are the search's matches in seq
    order, across many store pages."""
    monkeypatch.setattr("kimonaudit.store.sqlite_search._PAGE", 7)
    monkeypatch.setattr("kimonaudit.store.postgres_search._SEARCH_PAGE", 7)
    t = log.create_tenant("acme")
    other = log.create_tenant("other")
    for start in range(0, 90, 15):
        batch = [event(i) for i in range(start, start + 15)]
        batch[0]["metadata"] = {"note": "refund"}
        log.append(t.id, batch)
        log.append(other.id, batch[:5])
        clock.advance(minutes=20)
    for q in QUERIES:
        want = []
        cursor = None
        while True:
            page = log.search(t.id, q, limit=1000, cursor=cursor)
            want += [r.seq for r in page]
            if not (cursor := page.next_cursor):
                break
        data = read(log, t.id, q, fmt)
        if fmt == "csv":
            got = [int(r[1]) for r in parse_csv(data)[1:]]
        else:
            lines = data.decode("utf-8").splitlines()
            got = [json.loads(line)["seq"] for line in lines]
            for line in lines[:3]:
                e = json.loads(line)
                row = log.get_entry(t.id, e["seq"])
                assert e == entry_json(row, log.resolve_actor(t.id, row.actor_hash))
        assert got == sorted(want), q


def test_an_export_covers_the_log_as_it_stood_when_it_started(log):
    """Entries appended while an export streams are not in it, so it ends on
    a busy log and never contains its own audit entry."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(50)])
    exp = log.export(t.id, "", "ndjson")
    chunks = iter(exp)
    first = next(chunks)
    log.append(t.id, [event(i) for i in range(50, 80)])
    data = first + b"".join(chunks)
    seqs = [json.loads(line)["seq"] for line in data.splitlines()]
    assert seqs == list(range(50)) and exp.rows == 50 and exp.complete
    assert exp.count() == 50


def test_bad_exports_fail_before_any_byte(log):
    """A bad query or format is an error when the export is created."""
    t = log.create_tenant("acme")
    with pytest.raises(InvalidQuery):
        log.export(t.id, "nokey:x")
    with pytest.raises(InvalidInput, match="format"):
        log.export(t.id, "", "xlsx")


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(), st.integers(-99, 99)), max_size=4),
    st.lists(st.tuples(st.text(min_size=1, max_size=6), st.text(), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=5), st.recursive(
        st.one_of(st.none(), st.booleans(), st.text(), st.integers(-(2**53) + 1, 2**53 - 1)),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=8), max_size=4),
)  # fmt: skip
def test_payload_columns_cut_from_canonical_json(context, changes, metadata):
    """The fast path that cuts changes, context and metadata out of the stored
    payload gives each one's canonical JSON, as decoding and encoding would."""
    payload = {
        "changes": [{"field": f, "from": a, "to": b} for f, a, b in changes],
        "context": context,
        "metadata": metadata,
        "occurred_at": None,
    }
    data = canonical_text(payload).encode("utf-8")
    ch, ctx, ctx_json, meta, occurred = export_mod._payload_parts(data)
    assert ch == canonical_text(payload["changes"])
    assert ctx == context and ctx_json == canonical_text(context)
    assert meta == canonical_text(metadata) and occurred is None
    assert json.loads(ch) == json.loads(export_mod._payload_fallback(data.decode())[0])


def _peak(log: AuditLog, tenant_id: str) -> int:
    tracemalloc.start()
    try:
        for _ in log.export(tenant_id, ""):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_exports_grow(tmp_path, key_file, monkeypatch):
    """Peak Python memory of an export does not grow with its length: three
    times the rows, about the same peak."""
    monkeypatch.setattr("kimonaudit.store.sqlite_search._PAGE", 200)
    monkeypatch.setattr(export_mod, "CHUNK_BYTES", 16 * 1024)
    with kimonaudit.open(f"sqlite:///{tmp_path / 'm.db'}", key_file=key_file) as log:
        small = log.create_tenant("small")
        big = log.create_tenant("big")
        for i in range(0, 3000, 1000):
            batch = [event(j) for j in range(i, i + 1000)]
            log.append(big.id, batch)
            if i == 0:
                log.append(small.id, batch)
        # tracemalloc counts every thread: let the indexer finish its batches
        # first, so what is measured is the export alone.
        assert log.store.wait_indexed()
        _peak(log, small.id)  # warm caches (actor directory, IP text)
        assert _peak(log, big.id) < 1.5 * _peak(log, small.id)


# -- the CLI --------------------------------------------------------------------------
def test_cli_export_writes_the_file_and_is_audited(tmp_path: Path):
    """`kimonaudit export --query Q --format csv -o FILE` writes the CSV and
    appends audit_log.exported with the query, the row count and via=cli."""
    db, key = f"sqlite:///{tmp_path / 'cli.db'}", str(tmp_path / "cli.key")
    with kimonaudit.open(db, key_file=key) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(i) for i in range(25)])
    runner = CliRunner()
    out = tmp_path / "out.csv"
    base = ["--db", db, "--key-file", key]
    res = runner.invoke(cli, [*base, "export", "--tenant", tid, "--query", "action:ticket.*",
                              "--format", "csv", "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = parse_csv(out.read_bytes())
    assert rows[0] == list(CSV_COLUMNS) and len(rows) == 11
    assert not (tmp_path / "out.csv.part").exists()
    res = runner.invoke(cli, [*base, "export", "--tenant", tid, "--format", "ndjson"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 26  # 25 + the first export
    with kimonaudit.open(db, key_file=key) as log:
        audit = [entry_json(r)["metadata"] for r in log.search(tid, "action:audit_log.exported")]
    assert audit[1]["query"] == "action:ticket.*" and audit[1]["rows"] == 10
    assert audit[1]["via"] == "cli" and audit[1]["complete"] is True and "os_user" in audit[1]
    assert audit[0]["format"] == "ndjson" and audit[0]["rows"] == 26
    res = runner.invoke(cli, [*base, "export", "--tenant", tid, "--query", "bad:key"])
    assert res.exit_code != 0
