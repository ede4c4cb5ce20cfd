"""The optional C extension (`kimonaudit._native`) against the Python code it
stands in for: the leaf text it rebuilds from stored columns, the Merkle node
hashes, and whole verify reports on tampered SQLite logs with and without it
(including the threaded multi-chunk scan).

CI builds the extension (scripts/setup.sh), so there a missing module fails
these tests instead of skipping them."""

from __future__ import annotations

import hashlib
import itertools
import os
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit import verifier
from kimonaudit.core.events import Target, validate_batch
from kimonaudit.core.leaf import json_string, leaf_fields
from kimonaudit.core.merkle import LEAF_PREFIX, CompactRange, node_hashes_py
from kimonaudit.core.records import Prepared
from kimonaudit.core.timefmt import MAX_US, MIN_US
from kimonaudit.errors import StoreError
from tests.core.test_events import EVENTS
from tests.helpers import event, raw_db
from tests.test_tamper import CASES, Tamper, matrix_log

if os.environ.get("CI"):
    from kimonaudit import _native  # CI builds it: a failed build must fail here
else:
    _native = pytest.importorskip("kimonaudit._native")

SEQ_BITS = 40
# Stored text never holds lone surrogates (sqlite3 could not bind them).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
hostile = st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "é", "😀", "%s", "\n\t"])
field_text = st.one_of(texts, hostile, st.builds("".join, st.lists(hostile, max_size=6)))
optional = st.none() | field_text


def native_leaf(tenant, seq, at, eid, action, category, severity, security, actor_hash,
                actor_type, target_type, target_id, outcome, commitment, tenant_no=3):  # fmt: skip
    rid = (tenant_no << SEQ_BITS) | seq
    values = (rid, eid, at, action, category, severity, security, actor_hash, actor_type,
              target_type, target_id, outcome, commitment)  # fmt: skip
    return _native.leaf(values, json_string(tenant))


@settings(max_examples=400, deadline=None)
@given(
    tenant=field_text,
    seq=st.integers(0, (1 << SEQ_BITS) - 1),
    at=st.integers(MIN_US, MAX_US) | st.sampled_from([MIN_US, MAX_US, 0, -1, 951_782_400_000_000]),
    eid=optional,
    action=field_text,
    category=field_text,
    severity=st.integers(0, 4),
    security=st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1]),
    actor_hash=optional,
    actor_type=optional,
    target_type=optional,
    target_id=optional,
    outcome=field_text,
    commitment=st.binary(max_size=40),
)
def test_native_leaf_is_the_python_leaf(
    tenant, seq, at, eid, action, category, severity, security, actor_hash, actor_type,
    target_type, target_id, outcome, commitment,
):  # fmt: skip
    """Byte for byte, for any stored values: control characters, quotes,
    non-ASCII, every year from 0001 to 9999, any non-zero security flag."""
    want = LEAF_PREFIX + leaf_fields(
        tenant, seq, at, eid, action, category, severity, bool(security), actor_hash,
        actor_type, target_type, target_id, outcome, commitment,
    )  # fmt: skip
    got = native_leaf(
        tenant, seq, at, eid, action, category, severity, security, actor_hash, actor_type,
        target_type, target_id, outcome, commitment,
    )  # fmt: skip
    assert got == want


GOOD = dict(
    tenant="t_1", seq=5, at=1_764_000_000_123_456, eid="e-1", action="ticket.viewed",
    category="ticket", severity=1, security=0, actor_hash="ab" * 32, actor_type="agent",
    target_type="ticket", target_id="T-9", outcome="success", commitment=b"\x01" * 32,
)  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"severity": 5},
        {"severity": -1},
        {"severity": "high"},
        {"at": MAX_US + 1},
        {"at": MIN_US - 1},
        {"at": "2026-01-01T00:00:00Z"},
        {"security": "true"},
        {"action": None},
        {"outcome": b"success"},
        {"commitment": "01" * 32},
        {"actor_hash": 7},
    ],
    ids=str,
)
def test_native_leaf_refuses_what_the_writer_never_stores(change):
    """A value of the wrong storage class or out of range makes the row odd
    (None) so the Python check, with its own messages, sees it."""
    assert native_leaf(**GOOD) is not None
    assert native_leaf(**{**GOOD, **change}) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=64).map(lambda r: r[: len(r) & ~1]))
def test_native_node_hashes_are_rfc6962_nodes(row):
    assert _native.node_hashes(row) == node_hashes_py(row)
    for i in range(0, len(row), 2):
        assert (
            _native.node_hashes(row)[i // 2]
            == hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest()
        )


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ([b"\x00" * 32], ValueError),
        ([b"\x00" * 31, b"\x00" * 32], ValueError),
        ((b"",), TypeError),
        ([b"\x00" * 32, "x" * 32], ValueError),
    ],
)
def test_native_node_hashes_refuse_bad_rows(row, error):
    with pytest.raises(error):
        _native.node_hashes(row)


# --- whole verify reports, native and Python scan ----------------------------------


def make_log(url, key_file, clock):
    """The tamper matrix's log (20 entries, checkpoints at 10 and 20), with
    entry 2's payload and salt gone as a redaction leaves them (set
    directly: `redact` would append an entry the matrix does not expect)."""
    tid, _ = matrix_log(url, key_file, clock)
    with raw_db(url) as run:
        Tamper(run, tid).set(2, payload=None, salt=None)
    return url, tid


@pytest.fixture
def log(db_url, key_file, clock):
    return make_log(db_url, key_file, clock)


def _reports(url, key_file, tid, monkeypatch):
    """verify's report with the native scan in chunks of 4 on two threads,
    and with the Python scan; plus how many native scan calls ran. On
    PostgreSQL the native scan runs both ways (libpq read in C, and psycopg
    read with the rows checked in C), which must agree."""
    calls = []

    def counting(real):
        def call(*args):
            calls.append(args)
            return real(*args)

        return call

    with kimonaudit.open(url, key_file=key_file) as lg:
        with monkeypatch.context() as m:
            m.setattr(verifier, "CHUNK", 4)
            # PostgreSQL's COPY checked a few rows per call: odd rows' indexes
            # must be carried across calls.
            m.setattr("kimonaudit.store.postgres._COPY_ROWS", 3)
            m.setattr(_native, "scan", counting(_native.scan))
            m.setattr(_native, "scan_copy", counting(_native.scan_copy))
            m.setattr(_native, "scan_pg", counting(_native.scan_pg))
            native = lg.verify(tid)
            if lg.store.dialect == "postgres":
                libpq_calls = len(calls)
                m.setattr("kimonaudit.store.postgres._SCAN_WITH_LIBPQ", False)
                assert lg.verify(tid) == native
                assert 0 < libpq_calls < len(calls)
        with monkeypatch.context() as m:
            m.setattr(type(lg.store), "scan_ledger", lambda *a: None)
            python = lg.verify(tid)
    return native, python, len(calls)


def test_untouched_log_same_report_natively(log, key_file, monkeypatch):
    url, tid = log
    native, python, scans = _reports(url, key_file, tid, monkeypatch)
    assert scans >= 5  # one per chunk of 4: the threaded path ran
    assert native.ok and native == python
    assert (native.checked, native.present, native.redacted) == (20, 19, 1)


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_log_same_report_natively(log, key_file, monkeypatch, case):
    """Every edit of the tamper matrix (and the redaction beside it) gives the
    same report whether rows are checked in C, in chunks, or in Python."""
    url, tid = log
    edit, _ = CASES[case]
    with raw_db(url) as run:
        edit(Tamper(run, tid))
    native, python, scans = _reports(url, key_file, tid, monkeypatch)
    assert scans >= 2
    assert not native.ok
    assert native == python


def test_column_of_the_wrong_class_goes_to_python(tmp_path, key_file, clock, monkeypatch):
    """SQLite keeps any value in any column: a target id turned into a blob.
    The native scan lists the row as odd, and the Python check reports the
    entry as tampered (it used to stop verify with a TypeError)."""
    url, tid = make_log(f"sqlite:///{tmp_path / 'cls.db'}", key_file, clock)
    with raw_db(url) as run:
        Tamper(run, tid).set(9, target_id=b"T-9")
    native, python, _ = _reports(url, key_file, tid, monkeypatch)
    assert native == python
    assert native.tampered == 1 and native.first_bad_seq == 9


def test_escaping_in_stored_text_verifies_natively(tmp_path, key_file, monkeypatch):
    """Quotes, backslashes and non-ASCII in every stored text field verify
    clean through the native scan, without any row sent to Python (events
    cannot hold control characters; the leaf test above covers them)."""
    url = f"sqlite:///{tmp_path / 'esc.db'}"
    weird = 'q"b\\s é😀\u2028' + string.punctuation
    with kimonaudit.open(url, key_file=key_file) as lg:
        t = lg.create_tenant('acme "quoted" é')
        lg.append(
            t.id,
            [
                event(
                    i,
                    id=f"{weird}-{i}".replace("/", "|"),
                    actor={"id": weird, "name": weird},
                    target={"type": "ticket", "id": weird},
                )
                for i in range(12)
            ],
        )
        lg.checkpoint(t.id)
        found = lg.store.scan_ledger(t.id, 0, None)
        assert found is not None and found.odd == [] and found.present == 12
        assert lg.verify(t.id).ok


@pytest.mark.postgres
def test_copy_pieces_cut_anywhere_give_the_same_scan(pg_url, key_file, clock, monkeypatch):
    """PostgreSQL's COPY checked a row at a time, and its bytes cut at any
    point (inside the header, a length, a value), finds what one call finds."""
    import psycopg

    import kimonaudit.store.postgres as pg

    url, tid = make_log(pg_url, key_file, clock)
    with kimonaudit.open(url, key_file=key_file) as lg:
        whole = lg.store.scan_ledger(tid, 0, None)
        monkeypatch.setattr(pg, "_COPY_ROWS", 1)
        monkeypatch.setattr(pg, "_SCAN_WITH_LIBPQ", False)  # psycopg reads, C checks
        assert lg.store.scan_ledger(tid, 0, None) == whole
        assert lg.store.scan_ledger(tid, 5, 9).seqs == whole.seqs[5 * 8 : 9 * 8]
        assert lg.store.scan_ledger(tid, 9, 9) == pg.LedgerScan(b"", b"", [], 0, 0)
    assert whole.present == 19 and whole.redacted == 1 and whole.odd == []
    with psycopg.connect(url) as conn, conn.cursor().copy(pg._COPY_LEDGER.format(tid, 0, 99)) as cp:
        data = b"".join(bytes(m) for m in cp)
    tenant = json_string(tid)
    for cut in (1, 3, 7, 50, 333):
        seqs, hashes, present, buf, ended = b"", b"", 0, b"", False
        for i in range(0, len(data), cut):
            buf += data[i : i + cut]
            s, h, odd, p, _, used, ended = _native.scan_copy(buf, tenant)
            seqs, hashes, present, buf = seqs + s, hashes + h, present + p, buf[used:]
            assert odd == []
        assert ended and buf == b""
        assert (seqs, hashes, present) == (whole.seqs, whole.hashes, whole.present), cut


@pytest.mark.postgres
def test_libpq_scan_errors_are_clear_store_errors(pg_url, key_file, clock):
    """A connection the native scan cannot open, or a server error during
    its COPY, stops verify with a StoreError naming the cause, and the
    password never shows."""
    import kimonaudit.store.postgres as pg

    url, tid = make_log(pg_url, key_file, clock)
    with kimonaudit.open(url, key_file=key_file) as lg:
        store = lg.store
        store._scan_conninfo = "host=127.0.0.1 port=1 user=nobody password=s3cret-pw"
        store._secret = "s3cret-pw"
        with pytest.raises(StoreError, match="reading the ledger failed: connection") as info:
            lg.verify(tid)
        assert "s3cret-pw" not in str(info.value)
    conninfo = pg.make_conninfo(url)
    with pytest.raises(ConnectionError, match="syntax error"):
        _native.scan_pg(conninfo, "COPY (SELEC 1) TO STDOUT (FORMAT BINARY)", b'"t"')
    with pytest.raises(ValueError, match="not the binary COPY"):
        _native.scan_pg(conninfo, "COPY (SELECT 1) TO STDOUT (FORMAT BINARY)", b'"t"')
    with pytest.raises(ConnectionError, match="COPY"):
        _native.scan_pg(conninfo, "SELECT 1", b'"t"')


@pytest.mark.postgres
def test_libpq_scan_of_a_range_is_that_range(pg_url, key_file, clock):
    """scan_pg reads exactly [start, end), including an empty range."""
    import kimonaudit.store.postgres as pg

    url, tid = make_log(pg_url, key_file, clock)
    with kimonaudit.open(url, key_file=key_file) as lg:
        whole = lg.store.scan_ledger(tid, 0, None)
        part = lg.store.scan_ledger(tid, 5, 9)
        assert part.seqs == whole.seqs[5 * 8 : 9 * 8] and part.present == 4
        assert lg.store.scan_ledger(tid, 9, 9) == pg.LedgerScan(b"", b"", [], 0, 0)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(pg, "_SCAN_WITH_LIBPQ", False)
            assert lg.store.scan_ledger(tid, 0, None) == whole


def test_ci_builds_the_libpq_scan():
    """Where libpq's headers are installed (scripts/setup.sh installs them)
    the extension reads PostgreSQL's rows itself."""
    if os.path.exists("/usr/include/postgresql/libpq-fe.h"):
        assert hasattr(_native, "scan_pg")


@pytest.mark.parametrize(
    "data",
    [
        b"PGCOPZ\n\xff\r\n\x00" + bytes(8),
        b"\x00\x03" + bytes(12),
        b"\x00\x10\x00\x00\x00\x07" + bytes(7),
    ],
    ids=["bad signature", "wrong field count", "seq of the wrong width"],
)
def test_scan_copy_refuses_other_data(data):
    with pytest.raises(ValueError, match="not the binary COPY"):
        _native.scan_copy(data, b'"t"')


def test_scan_of_a_missing_file_is_a_store_error(tmp_path):
    with pytest.raises(OSError, match="unable to open"):
        _native.scan(str(tmp_path / "nope.db"), 0, 10, b'"t"')


def test_compact_range_with_native_nodes_matches_append(monkeypatch):
    """extend (native node hashes) builds the tree append builds leaf by leaf."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(37)]
    one = CompactRange()
    for h in leaves:
        one.append(h)
    many = CompactRange()
    many.extend(leaves[:5])
    many.extend(leaves[5:])
    assert many.root() == one.root() and many.hashes == one.hashes


# -- the append path: AuditLog._prepare's loop and plan_append's leaf hashes ----------


@pytest.fixture(scope="module")
def prep_log(tmp_path_factory):
    d = tmp_path_factory.mktemp("prep")
    with kimonaudit.open(f"sqlite:///{d / 'p.db'}", key_file=str(d / "k"), indexer="off") as lg:
        yield lg, lg.create_tenant('acme "é" \\ ☃').id


def _prepared_both_ways(lg, tid, events, monkeypatch, cached_only=False, native_results=None):
    """_prepare's result with the native loop and with the Python loop, given
    the same salts and server-made ids; `native_results` collects what the
    native loop returned (None: it left the batch to Python)."""
    native_results = [] if native_results is None else native_results
    import kimonaudit.service as service

    def salts(n):
        return bytes((i * 7 + 3) % 256 for i in range(n))

    def new_ids(n):
        return [f"0190-{i:04d}" for i in range(n)]

    out = []
    real = service._native_prepare
    with monkeypatch.context() as m:
        m.setattr(
            service,
            "_native_prepare",
            lambda *a: native_results.append(real(*a)) or native_results[-1],
        )
        m.setattr(service.os, "urandom", salts)
        m.setattr(service.ids, "uuid7_batch", new_ids)
        for flag in (True, False):
            m.setattr(service, "NATIVE_PREPARE", flag)
            lg._directory_cache.clear()
            out.append(lg._prepare(tid, events, cached_only))
    return out


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(EVENTS, min_size=1, max_size=12))
def test_native_prepare_is_the_python_prepare(prep_log, batch):
    """Every Prepared field, leaf head and tail, and the directory rows to
    write, for any batch validation accepts (shared actors, no ids, non-ASCII
    text, IPv4 and IPv6 addresses, every severity)."""
    lg, tid = prep_log
    # Ids unique within the batch; the first event again without its id, so
    # its actor and target objects are shared.
    batch = [
        dict(ev, id=f"{ev['id'][:150]}-{i}") if "id" in ev else ev for i, ev in enumerate(batch)
    ]
    events = validate_batch([*batch, {k: v for k, v in batch[0].items() if k != "id"}])
    ran = []
    with pytest.MonkeyPatch.context() as mp:
        native, python = _prepared_both_ways(lg, tid, events, mp, native_results=ran)
    assert len(ran) == 1 and ran[0] is not None  # the C loop did the batch
    assert native[0] == python[0]
    assert [type(p) for p in native[0]] == [Prepared] * len(events)
    assert native[1] == python[1]
    assert sorted(native[2]) == sorted(python[2])


def test_native_prepare_hands_odd_events_to_python(prep_log, monkeypatch):
    """Values validation never gives (a target id of a str subclass, an
    event id with a lone surrogate) make the native loop give up; the Python
    loop's answer (or error) is the one returned."""
    import dataclasses

    lg, tid = prep_log
    good = validate_batch([event(i) for i in range(3)])

    class Text(str):
        pass

    odd_target = dataclasses.replace(good[1], target=Target("ticket", Text("T-42")))
    calls = []
    events = [good[0], odd_target, good[2]]
    native, python = _prepared_both_ways(lg, tid, events, monkeypatch, native_results=calls)
    assert calls == [None]
    assert native == python and native[0][1].target_id == "T-42"
    surrogate = dataclasses.replace(good[0], id="x\ud800")
    native, python = _prepared_both_ways(lg, tid, [surrogate], monkeypatch)
    assert native == python and native[1].heads[0].count(b"\xed\xa0\x80") == 1


def test_native_prepare_passes_hook_errors_through(prep_log, monkeypatch):
    """An actor the directory must be read for, in cached_only mode, raises
    _NeedsIO from inside the native loop just as from the Python one."""
    import kimonaudit.service as service

    lg, tid = prep_log
    events = validate_batch([event(0, actor={"id": "never-seen-before", "type": "agent"})])
    for flag in (True, False):
        monkeypatch.setattr(service, "NATIVE_PREPARE", flag)
        lg.actor_hashes.for_tenant(tid)  # the tenant's cache exists, without this actor
        with pytest.raises(service._NeedsIO):
            lg._prepare(tid, events, True)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.binary(max_size=80), st.binary(max_size=80), st.booleans()), max_size=20
    ),
    middles=st.tuples(st.binary(max_size=40), st.binary(max_size=40)),
    seq0=st.integers(0, 2**53),
)
def test_native_leaf_hashes_are_plan_appends(rows, middles, seq0):
    """SHA-256(head + middles[security] + str(seq) + tail), seq counting up."""
    prepared = [("id", "a", "c", 0, sec) for _, _, sec in rows]
    heads = [h for h, _, _ in rows]
    tails = [t for _, t, _ in rows]
    want = [
        hashlib.sha256(h + middles[sec] + str(seq0 + i).encode() + t).digest()
        for i, (h, t, sec) in enumerate(rows)
    ]
    assert _native.leaf_hashes(prepared, heads, tails, middles, seq0) == want


def test_native_leaf_hashes_refuse_bad_input():
    with pytest.raises(ValueError, match="different lengths"):
        _native.leaf_hashes([("i", "a", "c", 0, True)], [], [], (b"", b""), 0)
    with pytest.raises(TypeError, match="Prepared rows and bytes"):
        _native.leaf_hashes([("i",)], [b"h"], [b"t"], (b"", b""), 0)


# -- the SQLite append path's native connection -------------------------------------


def _append_script(url, key_file, clock, monkeypatch, dump=None):
    """One scripted run of appends (server ids, client ids, retries with the
    same and with other content, a retry beside new events, a new actor
    name, two tenants) and what it left: receipts or errors, and every
    table the append path writes (`dump(url)`'s rows; SQLite's by default)."""
    import kimonaudit.service as service
    from kimonaudit.errors import Conflict

    counter = iter(range(10**9))
    monkeypatch.setattr(
        service.os, "urandom", lambda n: bytes(next(counter) % 256 for _ in range(n))
    )
    ids = iter(range(10**9))
    monkeypatch.setattr(
        service.ids, "uuid7_batch", lambda n: [f"srv-{next(ids)}" for _ in range(n)]
    )
    seen = []
    with kimonaudit.open(url, key_file=key_file, clock=clock, indexer="off") as lg:
        a = lg.create_tenant("a", tenant_id="t_a").id
        b = lg.create_tenant("b", tenant_id="t_b").id
        batches = [
            (a, [event(i) for i in range(40)]),
            (b, [event(i, id=f"c-{i}") for i in range(25)]),
            (b, [event(i, id=f"c-{i}") for i in range(20, 30)]),  # 5 retries, 5 new
            (b, [event(99, id="c-3", outcome="failure")]),  # other content: Conflict
            (a, [event(7, id="dup")]),
            (a, [event(8), event(7, id="dup"), event(9)]),  # a retry beside new events
            (a, [event(1, actor={"id": "agent_1", "type": "agent", "name": "Renamed"})]),
        ]
        for tid, batch in batches:
            clock.advance(seconds=1)
            try:
                seen.append([tuple(r) for r in lg.append(tid, batch)])
            except Conflict as exc:
                seen.append(str(exc))
        for tid in (a, b):
            assert lg.verify(tid).ok
    return seen + (dump or _sqlite_tables)(url)


def _sqlite_tables(url):
    import sqlite3

    from kimonaudit.store.sqlite import sqlite_path

    seen = []
    conn = sqlite3.connect(sqlite_path(url))
    tables = [
        ("ledger", "rid"),
        ("tree_nodes", "tenant_id, level, idx"),
        ("tree_state", "tenant_id"),
        ("actors", "tenant_id, actor_hash"),
    ]
    for table, order in tables:
        cols = [c[1] for c in conn.execute(f"PRAGMA table_info({table})") if c[1] != "updated_at"]
        seen.append(
            conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
        )
    conn.close()
    return seen


def test_native_sqlite_writes_are_the_sqlite3_writes(tmp_path, key_file, monkeypatch):
    """The same appends through the native SQLiteBatch connection and through
    the sqlite3 module leave the same receipts, errors and rows."""
    import kimonaudit.store.sqlite as sq
    from tests.conftest import FakeClock

    runs = []
    opened = []
    real = sq._open_batch

    def opening(*args):
        opened.append(real(*args))
        return opened[-1]

    for native_writes in (True, False):
        opened.clear()
        with monkeypatch.context() as m:
            m.setattr(sq, "NATIVE_WRITES", native_writes)
            m.setattr(sq, "_open_batch", opening)
            url = f"sqlite:///{tmp_path / f'w{native_writes}.db'}"
            runs.append(_append_script(url, key_file, FakeClock(), m))
            assert bool(opened) == native_writes
    native, python = runs
    assert native == python
    assert "already used for an event with other content" in native[3]
    assert len(native[7]) == 40 + 25 + 5 + 1 + 2 + 1  # ledger rows


def test_sqlite_batch_runs_statements_and_reports_errors(tmp_path):
    """SQLiteBatch binds None, int, float, str and bytes, returns each
    step's rows, and stops at the first failing step with sqlite3's
    exception types and a clear message."""
    import sqlite3

    path = str(tmp_path / "b.db")
    sqlite3.connect(path).executescript("CREATE TABLE t (k INTEGER PRIMARY KEY, v)")
    b = _native.SQLiteBatch(path, ["PRAGMA busy_timeout=1000"])
    values = [None, -(2**63), 2.5, "é\x00x", b"\x00\xff"]
    got = b.run(
        [("BEGIN", ())]
        + [("INSERT INTO t VALUES (?, ?)", (i, v)) for i, v in enumerate(values)]
        + [("SELECT v FROM t ORDER BY k", ()), ("SELECT count(*) FROM t WHERE k > ?", [2])]
    )
    assert got[:6] == [None] * 6
    assert got[6] == [(v,) for v in values] and got[7] == [(2,)]
    assert b.in_transaction
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        b.run([("INSERT INTO t VALUES (?, ?)", (9, 1)), ("INSERT INTO t VALUES (0, 1)", ())])
    assert b.run([("SELECT count(*) FROM t", ())]) == [[(6,)]]  # the first insert stayed
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        b.run([("SELEC 1", ())])
    with pytest.raises(sqlite3.OperationalError, match="wrong number of values"):
        b.run([("SELECT ?", ())])
    with pytest.raises(TypeError, match="cannot bind a list"):
        b.run([("SELECT ?", ([1],))])
    with pytest.raises(TypeError, match=r"\(sql, params\) tuple"):
        b.run(["SELECT 1"])
    b.run([("ROLLBACK", ())])
    assert not b.in_transaction
    b.close()
    with pytest.raises(sqlite3.OperationalError, match="closed"):
        b.run([("SELECT 1", ())])
    with pytest.raises(sqlite3.OperationalError, match="cannot open"):
        _native.SQLiteBatch(str(tmp_path / "missing.db"), [])


# -- validation: the common event finished in C --------------------------------------


def test_native_finish_takes_the_common_events(monkeypatch):
    """The benchmark's helpdesk events mostly finish in C, and every one is
    the Event (payload bytes included) that `_finish` makes."""
    from benchmarks.workload import events as workload

    from kimonaudit.core import decode
    from tests.core.test_decode_differential import snapshot

    objs = list(itertools.islice(workload(3_000), 3_000))
    results = []
    real = decode._native_finish
    monkeypatch.setattr(
        decode, "_native_finish", lambda items: results.append(real(items)) or results[-1]
    )
    native = [
        snapshot(e) for b in range(0, 3_000, 1_000) for e in validate_batch(objs[b : b + 1_000])
    ]
    finished = sum(e is not None for r in results for e in r)
    assert len(results) == 3 and finished == 3_000  # api.request's "{id}" routes included
    monkeypatch.setattr(decode, "NATIVE_FINISH", False)
    python = [
        snapshot(e) for b in range(0, 3_000, 1_000) for e in validate_batch(objs[b : b + 1_000])
    ]
    assert native == python


def test_native_finish_counts_only_the_objects_outside_strings(monkeypatch):
    """A "{" inside a string (a route template, quotes and backslashes
    around it) opens no object, so C finishes the event; a nested object
    sends it to `_finish`. Either way the Event is `_finish`'s."""
    from kimonaudit.core import decode
    from tests.core.test_decode_differential import snapshot

    tricky = ["/api/v2/tickets/{id}", '{"a": 1}', 'x\\"{', "\\", '"', "}{", "{{{"]
    objs = [event(i, context={"route": t, "k": f"{t}{t}"}) for i, t in enumerate(tricky)]
    objs.append(event(9, metadata={"note": "{", "deep": {"a": "{"}}))  # a nested object
    objs.append(event(10, changes=[{"field": "f{", "from": "{", "to": '"}'}]))
    results = []
    real = decode._native_finish
    monkeypatch.setattr(
        decode, "_native_finish", lambda items: results.append(real(items)) or results[-1]
    )
    native = [snapshot(e) for e in validate_batch(objs)]
    assert [e is not None for e in results[0]] == [True] * len(tricky) + [False, True]
    monkeypatch.setattr(decode, "NATIVE_FINISH", False)
    assert native == [snapshot(e) for e in validate_batch(objs)]


def test_native_finish_refuses_a_wrong_context():
    with pytest.raises(ValueError, match="wrong length"):
        _native.finish([], ())
    with pytest.raises(TypeError, match="wrong type"):
        _native.finish([], (None,) * 15)


@settings(max_examples=300, deadline=None)
@given(
    ms=st.integers(0, (1 << 48) - (1 << 10)),
    start=st.integers(0, 0xFFF),
    rand=st.binary(min_size=0, max_size=8 * 40).map(lambda b: b[: len(b) // 8 * 8]),
)
def test_native_uuid7_texts_are_the_python_ones(ms, start, rand):
    """The C assembly of a batch's UUIDv7 texts, carry into the next
    millisecond included, is the Python one; each parses as version 7."""
    import uuid

    from kimonaudit import ids

    n = len(rand) // 8
    made = _native.uuid7_texts(ms, start, n, rand)
    assert made == ids.uuid7_texts(ms, start, n, rand)
    assert all(uuid.UUID(u).version == 7 and uuid.UUID(u).variant == uuid.RFC_4122 for u in made)


def test_native_uuid7_texts_refuse_bad_input():
    with pytest.raises(ValueError, match="bad counts"):
        _native.uuid7_texts(1, 0, 2, b"x" * 8)


# -- POST /v1/events: the 201 body written in C ----------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            field_text,
            st.integers(0, 2**63 - 1),
            st.sampled_from([MIN_US, MAX_US, 0, -1, 1_765_000_000_123_456])
            | st.integers(MIN_US, MAX_US),
            st.binary(max_size=40),
        ),
        max_size=20,
    )
)
def test_native_receipts_body_is_the_json_the_route_sends(rows):
    """Byte for byte what msgspec makes of `receipts_json`, and what
    JSONResponse would send (compact, UTF-8 unescaped): hostile ids, every
    base64 padding length, times at both ends of the range, a batch's
    shared time."""
    import json

    import msgspec

    from kimonaudit.core.records import Receipt
    from kimonaudit.views import receipts_json

    receipts = [Receipt(*r) for r in rows] + [Receipt(*r) for r in rows[:3]]
    made = _native.receipts_body(receipts)
    assert made == msgspec.json.encode({"receipts": receipts_json(receipts)})
    as_json = {"receipts": receipts_json(receipts)}
    assert made == json.dumps(as_json, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from([b'"', b":", b" ", b"\t", b"\n", b"\r", b"a", b'":', b" :", b"\\"])
        | st.binary(max_size=6),
        max_size=40,
    ).map(b"".join)
)
def test_native_key_colons_is_the_python_scan(raw):
    """The one-pass count of '":' and the whitespace-before-colon check
    that the duplicate-key test relies on, against the Python scans."""
    from kimonaudit.core.decode import key_colons_py

    assert _native.key_colons(raw) == key_colons_py(raw)


@pytest.mark.parametrize(
    "bad",
    [
        ("\ud800", 1, 0, b""),  # not UTF-8
        ("a", -1, 0, b""),
        ("a", 1, MAX_US + 1, b""),
        ("a", 2**64, 0, b""),
        ("a", 1, 0, "not bytes"),
        ("a", 1, 0),
    ],
)
def test_native_receipts_body_refuses_what_it_cannot_write(bad):
    """A ValueError, never wrong bytes: views.receipts_body then asks msgspec."""
    with pytest.raises(ValueError, match="cannot write"):
        _native.receipts_body([("ok", 1, 0, b"h"), bad])


def test_receipts_body_falls_back_to_msgspec_for_what_c_refuses():
    from kimonaudit.core.records import Receipt
    from kimonaudit.views import receipts_body

    # A negative seq never comes from a store, but shows the fallback's bytes.
    odd = [Receipt("x", -3, 0, b"\x01")]
    assert receipts_body(odd) == (
        b'{"receipts":[{"id":"x","seq":-3,"recorded_at":"1970-01-01T00:00:00.000000Z",'
        b'"leaf_hash":"AQ=="}]}'
    )


# -- PostgreSQL appends: the COPY formatted in C -------------------------------------


@pytest.mark.postgres
def test_native_copy_appends_what_psycopg_appends(pg_admin_url, key_file, monkeypatch):
    """The same appends, into two fresh schemas, with the COPY formatted in
    C and by psycopg's write_row, leave the same ledger and event-id rows
    (the server parses both; a wrong length or type would fail the COPY)."""
    import secrets

    import psycopg

    import kimonaudit.service as service
    import kimonaudit.store.postgres as pg
    from tests.conftest import FakeClock, _with_schema

    dumps = []
    for native_copy in (True, False):
        schema = "kt_" + secrets.token_hex(6)
        url = _with_schema(pg_admin_url, schema)
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            counter = iter(range(10**9))
            monkeypatch.setattr(
                service.os, "urandom", lambda n, c=counter: bytes(next(c) % 256 for _ in range(n))
            )
            monkeypatch.setattr(pg, "NATIVE_COPY", native_copy)
            with kimonaudit.open(url, key_file=key_file, clock=FakeClock(), indexer="off") as lg:
                tid = lg.create_tenant("t", tenant_id="t_copy").id
                weird = 'q"b\\s é😀'
                lg.append(tid, [event(i, id=f"c-{i}") for i in range(30)])
                lg.append(tid, [event(i, id=f"c-{i}") for i in range(25, 40)])
                lg.append(tid, [event(0, id=f"w-{weird}", target={"type": "t", "id": weird})])
                assert lg.verify(tid).ok
            with psycopg.connect(url) as conn:
                dumps.append(
                    [
                        conn.execute(f"SELECT * FROM {table} ORDER BY seq").fetchall()
                        for table in ("entries", "event_ids")
                    ]
                )
        finally:
            with psycopg.connect(pg_admin_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert dumps[0] == dumps[1] and len(dumps[0][0]) == 41


def _pg_tables(url):
    import psycopg

    tables = [
        ("entries", "tenant_id, seq"),
        ("event_ids", "tenant_id, seq"),
        ("tree_nodes", "tenant_id, level, idx"),
        ("tree_state", "tenant_id"),
        ("actors", "tenant_id, actor_hash"),
    ]
    seen = []
    with psycopg.connect(url) as conn:
        for table, order in tables:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s AND table_schema = current_schema() "
                    "ORDER BY ordinal_position",
                    (table,),
                )
                if r[0] != "updated_at"
            ]
            seen.append(
                conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
            )
    return seen


@pytest.mark.postgres
def test_native_pg_writes_are_the_psycopg_writes(pg_admin_url, key_file, monkeypatch):
    """The same appends through the native PGBatch connection, through
    psycopg with the COPY formatted in C, and through psycopg alone leave
    the same receipts, errors and rows in every table the append path
    writes."""
    import secrets

    import psycopg

    import kimonaudit.store.postgres as pg
    from tests.conftest import FakeClock, _with_schema

    runs = []
    for native_writes, native_copy in ((True, True), (False, True), (False, False)):
        schema = "kt_" + secrets.token_hex(6)
        url = _with_schema(pg_admin_url, schema)
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        opened = []
        real = pg._open_batch

        def opening(*args, real=real, opened=opened):
            opened.append(real(*args))
            return opened[-1]

        try:
            with monkeypatch.context() as m:
                m.setattr(pg, "NATIVE_WRITES", native_writes)
                m.setattr(pg, "NATIVE_COPY", native_copy)
                m.setattr(pg, "_open_batch", opening)
                runs.append(_append_script(url, key_file, FakeClock(), m, _pg_tables))
            assert (opened[0] is not None) == native_writes
        finally:
            with psycopg.connect(pg_admin_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert runs[0] == runs[1] == runs[2]
    assert "already used for an event with other content" in runs[0][3]
    assert len(runs[0][7]) == 40 + 25 + 5 + 1 + 2 + 1  # ledger rows
    assert len(runs[0][8]) == len(runs[0][7])  # event ids
    assert any(r[4] == "Renamed" for r in runs[0][11])  # the actor directory


@pytest.mark.postgres
def test_pg_batch_runs_steps_and_reports_errors(pg_url):
    """PGBatch sends None, bool, int, str, bytes and arrays, runs COPY
    steps, returns each query's rows in text format, and stops at the
    first failing step with the server's message and SQLSTATE, leaving the
    transaction for the caller to roll back."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k int8 PRIMARY KEY, v text, b bytea, f bool)")
    b = _native.PGBatch(pg_url)
    assert b.pid > 0
    weird = 'q"b\\s é😀,{}'
    copy = _native.copy_binary([(5, "c", b"\x00", None)], "qtyb", (0, 1, 2, 3))
    got = b.run(
        [
            ("BEGIN", ()),
            ("INSERT INTO t VALUES ($1, $2, $3, $4)", (1, weird, b"\x00\xff", True)),
            ("INSERT INTO t VALUES ($1, $2, $3, $4)", [2, None, None, False]),
            ("COPY t (k, v, b, f) FROM STDIN (FORMAT BINARY)", copy),
            ("SELECT k, v, b, f FROM t ORDER BY k", ()),
            ("SELECT $1::int8[], $2::text[]", ([-(2**63), 0], [weird, None, ""])),
        ]
    )
    assert got[:4] == [None] * 4
    assert got[4] == [
        ("1", weird, "\\x00ff", "t"),
        ("2", None, None, "f"),
        ("5", "c", "\\x00", None),
    ]
    assert got[5] == [("{-9223372036854775808,0}", '{"q\\"b\\\\s é😀,{}",NULL,""}')]
    assert b.in_transaction and not b.broken
    with pytest.raises(_native.PGBatchError, match=r"duplicate key.*\(statement 2 of 3\)") as err:
        b.run(
            [
                ("INSERT INTO t (k) VALUES ($1)", (9,)),
                ("INSERT INTO t (k) VALUES (1)", ()),
                ("INSERT INTO t (k) VALUES (10)", ()),
            ]
        )
    assert err.value.args[1:] == ("23505", 1, 3)  # state, failing step, steps sent
    assert b.in_transaction  # aborted, not ended: the caller rolls back
    with pytest.raises(_native.PGBatchError, match="current transaction is aborted"):
        b.run([("SELECT 1", ())])
    assert b.run([("ROLLBACK", ())]) == [None]
    assert not b.in_transaction
    assert b.run([("SELECT count(*) FROM t", ())]) == [[("0",)]]  # all rolled back
    with pytest.raises(_native.PGBatchError, match="COPY") as err:
        b.run([("COPY t (k) FROM STDIN (FORMAT BINARY)", b"not a copy")])
    assert err.value.args[1] == "22P04"
    with pytest.raises(_native.PGBatchError, match="syntax error") as err:
        b.run([("SELEC 1", ())])
    assert err.value.args[1] == "42601"
    with pytest.raises(TypeError, match="cannot send a float"):
        b.run([("SELECT $1", (2.5,))])
    with pytest.raises(TypeError, match="array holds a bytes"):
        b.run([("SELECT $1", ([b"x"],))])
    with pytest.raises(TypeError, match=r"\(sql, params\) tuple"):
        b.run(["SELECT 1"])
    assert b.run([("SELECT 2", ())]) == [[("2",)]]  # still usable after refusals
    # Many queries: several pipelines, every answer in its place.
    many = b.run([("SELECT $1::int8 * 2", (i,)) for i in range(3_000)])
    assert many == [[(str(i * 2),)] for i in range(3_000)]
    with pytest.raises(_native.PGBatchError, match=r"\(statement 2001 of 3000\)"):
        b.run([("SELECT 1 / $1::int", (int(i != 2_000),)) for i in range(3_000)])
    b.close()
    assert b.broken
    with pytest.raises(_native.PGBatchError, match="closed"):
        b.run([("SELECT 1", ())])
    with pytest.raises(ConnectionError):
        _native.PGBatch("host=127.0.0.1 port=1 connect_timeout=2")


@pytest.mark.postgres
def test_pg_append_session_reruns_only_what_never_reached_the_server(pg_url, key_file):
    """The append session connects again and reruns a call only when its
    transaction's BEGIN failed on a dropped connection (nothing reached the
    server); a connection lost later in the call leaves the outcome unknown,
    and the error goes to the caller instead of a second run. nextval is not
    rolled back, so it counts the runs."""
    import psycopg

    import kimonaudit.store.postgres as pg
    from kimonaudit.store.writer import CommitUnknown

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE runs")

        def runs() -> int:
            return conn.execute("SELECT last_value FROM runs").fetchone()[0]

        with kimonaudit.open(pg_url, key_file=key_file, indexer="off") as lg:
            s = pg._BatchWriteSession(lg.store, _native.PGBatch(pg_url))
            # Lost after BEGIN, mid-call: an error, not a second run.
            s.begin()
            kill = ("SELECT pg_terminate_backend(pg_backend_pid())", ())
            with pytest.raises(StoreError, match=r"append to PostgreSQL .* failed"):
                s._run([("SELECT nextval('runs')", ()), kill, ("SELECT nextval('runs')", ())])
            assert runs() == 1 and s.batch.broken
            s.rollback()  # nothing to roll back on a lost connection
            # Known to be lost before the call: connected again first.
            s.begin()
            assert s._run([("SELECT nextval('runs')", ())]) == [[("2",)]]
            s.rollback()
            # Dropped while idle, found out by BEGIN: connected again, run once.
            pid = s.batch.pid
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.01)
            s.begin()
            assert s._run([("SELECT nextval('runs')", ())]) == [[("3",)]]
            assert s.batch.pid != pid and runs() == 3
            s.rollback()
            # Lost in the round trip that holds the COMMIT: outcome unknown.
            s.begin()
            with pytest.raises(CommitUnknown, match="may or may not"):
                s._run([("SELECT nextval('runs')", ()), kill, ("COMMIT", ())])
            assert runs() == 4
            s.rollback()
            s.close()


@pytest.mark.postgres
def test_native_copy_binary_is_read_back_by_the_server(pg_url):
    import psycopg

    rows = [("a", 2**62, -5, True, b"\x00\xff", None), ("é😀", -1, 2**31 - 1, False, b"", "x")]
    data = _native.copy_binary(rows, "tqibyt", (0, 1, 2, 3, 4, 5))
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TEMP TABLE cb (a text, b int8, c int4, d bool, e bytea, f text)")
        with conn.cursor().copy("COPY cb FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(data)
        assert conn.execute("SELECT * FROM cb").fetchall() == rows


@pytest.mark.parametrize(
    ("row", "types", "error", "match"),
    [
        (("a\x00b",), "t", ValueError, "NUL"),
        ((2**31,), "i", OverflowError, "int4"),
        ((2,), "b", TypeError, "type b"),
        ((b"x",), "t", TypeError, "bytes where type t"),
        ((1,), "z", ValueError, "unknown type"),
    ],
)
def test_native_copy_binary_refuses_bad_values(row, types, error, match):
    with pytest.raises(error, match=match):
        _native.copy_binary([row], types, (0,))


@given(st.lists(st.tuples(st.integers(), st.lists(st.integers(-(2**70), 2**70)))))
def test_native_pair_runs_is_the_python_pairing(runs):
    from kimonaudit.store.sqlite_index import _pair_runs_py

    assert _native.pair_runs(runs) == _pair_runs_py(runs)


def test_native_pair_runs_refuses_what_is_not_runs():
    for bad in ([(1, (2, 3))], [(1,)], [[1, [2]]], ((1, [2]),)):
        with pytest.raises(TypeError, match="pair_runs"):
            _native.pair_runs(bad)


@settings(max_examples=200, deadline=None)
@given(
    # No lone surrogates, which UTF-8 cannot carry (refused below).
    tenant=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
    ),
    steps=st.lists(st.integers(1, 3), min_size=1, max_size=60),
    first=st.integers(0, 2**40),
    picks=st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.lists(st.integers(0, 59))), max_size=8
    ),
)
def test_native_copy_postings_is_copy_binary_of_the_postings(tenant, steps, first, picks):
    """The postings' COPY made from runs is the one copy_binary makes from a
    tuple per posting, seqs with gaps included (the direct guess misses)."""
    seqs = list(itertools.accumulate(steps, initial=first))[1:]
    rows = [(s, s * 7 - 3, "payload") for s in seqs]
    runs = [(term, sorted({seqs[i % len(seqs)] for i in idx})) for term, idx in picks]
    at = {s: a for s, a, _ in rows}
    tuples = [(tenant, term, s, at[s]) for term, run in runs for s in run]
    assert _native.copy_postings(tenant, runs, rows) == _native.copy_binary(
        tuples, "tqqq", (0, 1, 2, 3)
    )


@pytest.mark.parametrize(
    ("tenant", "runs", "rows", "error", "match"),
    [
        ("t", [(1, [9])], [(5, 1), (6, 2)], KeyError, "seq 9"),
        ("t", [(1, [5])], [(6, 1), (5, 2)], ValueError, "seq order"),
        ("t", [(1, 5)], [(5, 1)], TypeError, "runs must be"),
        ("t", [(1, [5])], [(5,)], TypeError, "rows must be"),
        ("t\x00", [(1, [5])], [(5, 1)], ValueError, "NUL"),
        ("t\ud800", [(1, [5])], [(5, 1)], UnicodeEncodeError, "surrogates"),
        ("t", [(1, [5])], [], KeyError, "seq 5"),
    ],
)
def test_native_copy_postings_refuses_what_it_cannot_write(tenant, runs, rows, error, match):
    with pytest.raises(error, match=match):
        _native.copy_postings(tenant, runs, rows)


@pytest.mark.parametrize("retry", [False, True])
def test_native_plan_is_the_python_plan(prep_log, monkeypatch, retry):
    """plan_append's leaf hashes, rows and receipts made in C equal the
    comprehensions', with and without retries of stored ids."""
    from kimonaudit.core import ledger
    from kimonaudit.core.merkle import CompactRange
    from kimonaudit.core.records import EntryRow, Receipt, TreeState

    lg, tid = prep_log
    events = validate_batch([event(i, id=f"p-{i}") for i in range(37)])
    prepared, parts, _ = lg._prepare(tid, events, False)
    tree = CompactRange()
    tree.extend([hashlib.sha256(b"%d" % i).digest() for i in range(11)])
    state = TreeState(tid, tree, 1_700_000_000_000_000, 0)
    existing = {}
    if retry:
        p = prepared[5]
        existing = {p.event_id: EntryRow(tid, 3, p.event_id, 1, *p[1:], b"\x01" * 32)}
    plans = []
    for native_plan in (True, False):
        if not native_plan:
            monkeypatch.setattr(ledger, "_leaf_hashes", None)
        plan = ledger.plan_append(state, prepared, existing, 1_700_000_000_000_001, parts)
        plans.append(plan)
    native, python = plans
    assert native == python
    assert all(type(r) is EntryRow for r in native.rows)
    assert all(type(r) is Receipt for r in native.receipts)
    assert len(native.rows) == 36 if retry else 37
    assert native.state.tree.root() == python.state.tree.root()


def test_native_finish_settles_what_the_python_validator_cached():
    """An actor or target whose first event took the Python path is cached
    tracked (Python made it); the next event that meets it in C untracks
    it, so neither it nor the events holding it stay in the collector's
    sight. The event holding a list in its payload stays tracked."""
    import gc

    tag = os.urandom(4).hex()
    who = {"id": f"agent_{tag}", "type": "agent", "name": "José"}  # not plain ASCII: Python
    what = {"type": "ticket", "id": f"é-{tag}"}
    first = validate_batch([{"action": "ticket.viewed", "actor": who, "target": what}])[0]
    assert gc.is_tracked(first.actor) and gc.is_tracked(first.target)
    later = validate_batch(
        [
            {"action": "ticket.viewed", "actor": who, "target": what},
            {"action": "ticket.viewed", "actor": who, "metadata": {"l": [1]}},
        ]
    )
    assert later[0].actor is first.actor and later[0].target is first.target
    assert not gc.is_tracked(first.actor) and not gc.is_tracked(first.target)
    assert not gc.is_tracked(later[0])
    assert gc.is_tracked(later[1])
    gc.collect()
    assert later[0].actor.name == "José" and later[0].target.id == f"é-{tag}"


def test_read_only_map_reads_as_mappingproxy_does():
    """ReadOnlyMap (an Event's context and metadata) answers every read as
    a mappingproxy of the same dict, refuses writes, and is left out of the
    collector's sight only while its dict holds no container."""
    import collections
    import gc
    from collections.abc import Mapping
    from types import MappingProxyType

    from kimonaudit.core.events import read_only

    assert read_only is _native.ReadOnlyMap
    data = {"ip": "203.0.113.7", "n": 3, "ok": True, "none": None}
    view, proxy = _native.ReadOnlyMap(dict(data)), MappingProxyType(dict(data))
    assert isinstance(view, Mapping)
    assert len(view) == len(proxy) and list(view) == list(proxy) and "ip" in view
    assert view["n"] == 3 and view.get("x") is None and view.get("x", 7) == 7
    assert list(view.keys()) == list(proxy.keys()) and list(view.items()) == list(proxy.items())
    assert list(view.values()) == list(proxy.values()) and list(reversed(view)) == list(
        reversed(proxy)
    )
    assert view == proxy and proxy == view and view == data and data == view
    assert view != {**data, "n": 4} and view == _native.ReadOnlyMap(dict(data))
    assert (view | {"x": 1}) == (proxy | {"x": 1}) and ({"x": 1} | view) == {"x": 1, **data}
    copied = view.copy()
    copied["x"] = 1
    assert "x" not in view and repr(view) == f"ReadOnlyMap({data!r})"
    with pytest.raises(KeyError):
        view["missing"]
    with pytest.raises(TypeError):
        view["n"] = 4  # type: ignore[index]
    with pytest.raises(TypeError):
        del view["n"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        view |= {"x": 1}  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(view)
    with pytest.raises(TypeError):
        _native.ReadOnlyMap(collections.OrderedDict(data))
    assert not gc.is_tracked(view)
    assert gc.is_tracked(_native.ReadOnlyMap({"tags": ["a"]}))


def test_native_append_objects_are_out_of_the_collectors_sight(prep_log):
    """What the C append path builds from plain values (Events and their
    parts, Prepared, rows, receipts) is untracked as it is made, and works as
    before after a full collection; an event holding a list stays tracked,
    so a cycle made through it is still collected."""
    import dataclasses
    import gc
    import weakref

    from kimonaudit.core import ledger
    from kimonaudit.core.records import TreeState

    lg, tid = prep_log
    events = validate_batch([event(i) for i in range(25)])
    prepared, parts, _ = lg._prepare(tid, events, False)
    plan = ledger.plan_append(
        TreeState(tid, CompactRange(), 1, 0), prepared, {}, 1_700_000_000_000_001, parts
    )
    parts_of = [
        x
        for e in events
        for x in (e, e.actor, e.target, *e.changes, e.context, e.metadata)
        if x is not None
    ]
    assert any(e.changes for e in events) and any(e.target for e in events)
    assert all(e.context and e.metadata for e in events)  # views of non-empty dicts
    for obj in [*parts_of, *prepared, *plan.rows, *plan.receipts]:
        assert not gc.is_tracked(obj), obj
    gc.collect()
    again = validate_batch([event(i) for i in range(25)])
    assert events == again
    changed = dataclasses.replace(events[1], outcome="failure")
    assert changed.outcome == "failure" and changed.changes == events[1].changes

    [listed] = validate_batch([event(1, metadata={"tags": ["a", "b"]})])
    assert gc.is_tracked(listed) and gc.is_tracked(listed.metadata)
    with pytest.raises(TypeError):
        listed.metadata["more"] = 1  # type: ignore[index]
    listed.metadata["tags"].append(listed)  # a cycle through the event
    gone = weakref.ref(listed)
    del listed
    gc.collect()
    assert gone() is None


def test_native_finish_takes_json_bodies_and_counts_members(monkeypatch):
    """HTTP bodies of the benchmark's events mostly finish in C, to the same
    Events; a repeated key is still found (the C path counts members)."""
    import json as jsonlib

    from benchmarks.workload import events as workload

    from kimonaudit.core import decode
    from tests.core.test_decode_differential import snapshot

    objs = list(itertools.islice(workload(500), 500))
    body = jsonlib.dumps({"events": objs}).encode()
    results = []
    real = decode._native_finish
    monkeypatch.setattr(
        decode,
        "_native_finish",
        lambda items, **kw: results.append(real(items, **kw)) or results[-1],
    )
    native = [snapshot(e) for e in decode.decode_body_fast(body)]
    assert sum(r is not None for r in results[0]) > 400
    monkeypatch.setattr(decode, "NATIVE_FINISH", False)
    assert native == [snapshot(e) for e in decode.decode_body_fast(body)]
    monkeypatch.setattr(decode, "NATIVE_FINISH", True)
    doubled = body.replace(
        b'"action": "ticket.viewed"', b'"action": "ticket.viewed", "outcome": "failure"', 1
    )
    doubled = doubled.replace(
        b'"outcome": "failure"', b'"outcome": "failure", "outcome": "success"', 1
    )
    with pytest.raises(decode.DuplicateKey, match="outcome"):
        decode.decode_body_fast(doubled)
    line = jsonlib.dumps(objs[0]).encode()
    assert snapshot(decode.decode_line_fast(line)) == native[0]


# -- the indexer's projection of a batch ------------------------------------------------

_ascii_words = st.text(
    st.sampled_from(string.ascii_letters + string.digits + " ._-@/:"), max_size=20
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _ascii_words,
    texts,
    hostile,
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ascii_words, inner, max_size=4),
    max_leaves=12,
)
_change = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "field": _ascii_words | st.none() | st.integers(),
            "from": _json_value,
            "to": _json_value,
        },
    ),
    _json_value,
)
_payload_dict = st.fixed_dictionaries(
    {},
    optional={
        "context": st.dictionaries(_ascii_words, _json_value, max_size=5) | _json_value,
        "changes": st.lists(_change, max_size=4) | _json_value,
        "metadata": st.dictionaries(_ascii_words, _json_value, max_size=5) | _json_value,
        "actor": st.just({"id": "agent_1"}),
    },
)


def _payload_bytes(value: object) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


_payload = st.one_of(
    st.none(),
    _payload_dict.map(_payload_bytes),
    _json_value.map(_payload_bytes),
    st.sampled_from([b"not json", b"", b"{", b'{"context": {"a": "x"}}  ']),
)
_projection_row = st.tuples(
    st.integers(0, 1 << 50),  # the key: a seq or a rid
    st.integers(MIN_US, MAX_US),
    _ascii_words | texts,  # action
    st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    st.none() | _ascii_words,  # actor type
    st.none() | _ascii_words | texts,  # target type
    st.none() | _ascii_words | texts,  # target id
    st.sampled_from(["success", "failure", "denied"]) | _ascii_words,
    st.sampled_from([0, 1, True, False]),
    st.integers(0, 4),
    st.none() | st.binary(min_size=4, max_size=16),
    _payload,
)


def _project_both(monkeypatch, rows):
    from kimonaudit.core import projection

    def run():
        try:
            groups, texts = projection.project(rows)
        except Exception as exc:  # the same error both ways
            return type(exc).__name__
        return list(groups.items()), texts

    native = run()
    monkeypatch.setattr(projection, "NATIVE_PROJECT", False)
    python = run()
    monkeypatch.setattr(projection, "NATIVE_PROJECT", True)
    return native, python


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(_projection_row, max_size=8))
def test_native_projection_is_the_python_projection(rows):
    """Postings (terms in first-seen order, keys in row order) and documents
    are those of postings_by_term and entry_text, for ASCII rows the C code
    takes and for everything it hands back (non-ASCII text, floats, odd
    payloads, payloads that are not JSON)."""
    with pytest.MonkeyPatch.context() as mp:
        native, python = _project_both(mp, rows)
    assert native == python


def test_native_projection_takes_the_benchmark_rows_itself(tmp_path, key_file):
    """The helpdesk's events are projected in C without one call back to
    Python, and odd column types make it hand the whole batch back."""
    from benchmarks.workload import events as workload

    from kimonaudit.core.projection import _decode_json
    from kimonaudit.store import sqlite_index as si

    url = f"sqlite:///{tmp_path / 'p.db'}"
    with kimonaudit.open(url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        objs = list(itertools.islice(workload(2_000), 2_000))
        log.append(tid, objs[:1_000])
        log.append(tid, objs[1_000:])
    ledger = si._open_ledger(str(tmp_path / "p.db"))
    rows = si.keyed_rows(ledger, 1, 0, 2_000)
    ledger.close()
    called: list[object] = []
    done = _native.project(rows, _decode_json, called.append)
    assert done is not None and called == []
    groups, texts = done
    assert len(texts) == 2_000 and all(t and t.isascii() for t in texts)
    assert sum(map(len, groups.values())) >= 2 * 2_000  # an action and an actor each at least
    with pytest.MonkeyPatch.context() as mp:
        assert _project_both(mp, rows)[0] == _project_both(mp, rows)[1]
    odd = [(*rows[0][:10], "10.0.0.1", rows[0][11])]  # an IP stored as text
    assert _native.project(odd, _decode_json, called.append) is None
    with pytest.MonkeyPatch.context() as mp:
        assert _project_both(mp, odd) == ("AttributeError", "AttributeError")
    with pytest.raises(TypeError):
        _native.project(tuple(rows), _decode_json, called.append)


# -- PostgreSQL documents as binary tsvectors ------------------------------------------

# Words as search_words makes them, weighted towards what the default text
# search parser reads specially (digits and "e": scientific notation).
_tsv_word = st.one_of(
    st.text("0123456789e", min_size=1, max_size=8),
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12),
    st.sampled_from(["1e5", "1e5abc", "2e10x", "5e5e5", "12e", "e1", "0x1f", "00012"]),
    st.text("ab", min_size=1020, max_size=1030),  # around the word-length limit
)
_tsv_doc = st.one_of(
    st.lists(_tsv_word, max_size=30).map(" ".join),
    st.lists(st.sampled_from(["a", "b", "1"]), min_size=250, max_size=300).map(" ".join),
    st.sampled_from([" a", "a ", "a  b", "A b", "é", "a-b", "a\tb"]),  # not search_words' output
)


@pytest.mark.postgres
@settings(max_examples=60, deadline=None)
@given(docs=st.lists(_tsv_doc, min_size=1, max_size=20))
def test_native_tsvectors_are_the_servers(pg_admin_url, docs):
    """Where the C code makes a document's vector, it is byte for byte the
    server's tsvectorsend(to_tsvector('simple', doc)); where it does not,
    the document is one it cannot vouch for."""
    import psycopg

    vectors = _native.tsvectors(docs)
    with psycopg.connect(pg_admin_url) as conn:
        server = conn.execute(
            "SELECT tsvectorsend(to_tsvector('simple', d)) FROM unnest(%s::text[])"
            " WITH ORDINALITY AS u(d, i) ORDER BY i",
            (docs,),
        ).fetchall()
    for doc, mine, (theirs,) in zip(docs, vectors, server, strict=True):
        if mine is not None:
            assert mine == bytes(theirs), doc
        else:
            words = doc.split(" ")
            assert (
                not doc.isascii()
                or any(not w or not w.isalnum() or w != w.lower() for w in words)
                or any(len(w) > 1024 or (w[:1].isdigit() and "e" in w) for w in words)
                or len(words) > 16383
                or max(words.count(w) for w in words) > 255
            ), doc


def test_native_tsvectors_take_the_benchmark_documents():
    from benchmarks.workload import events as workload

    from kimonaudit.core.searchtext import search_words

    docs = [
        " ".join(search_words(" ".join(str(v) for v in e.get("context", {}).values())))
        for e in itertools.islice(workload(500), 500)
    ]
    assert all(v is not None for v in _native.tsvectors(docs))
    with pytest.raises(TypeError):
        _native.tsvectors(tuple(docs))
