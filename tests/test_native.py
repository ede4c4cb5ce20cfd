"""The optional C extension (`kimonaudit._native`) against the Python code it
stands in for: the leaf text it rebuilds from stored columns, the Merkle node
hashes, and whole verify reports on tampered SQLite logs with and without it
(including the threaded multi-chunk scan).

CI builds the extension (scripts/setup.sh), so there a missing module fails
these tests instead of skipping them."""

from __future__ import annotations

import hashlib
import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit import verifier
from kimonaudit.core.leaf import json_string, leaf_fields
from kimonaudit.core.merkle import LEAF_PREFIX, CompactRange, node_hashes_py
from kimonaudit.core.timefmt import MAX_US, MIN_US
from kimonaudit.errors import StoreError
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
