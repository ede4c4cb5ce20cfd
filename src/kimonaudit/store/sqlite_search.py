"""Search over the SQLite ledger and its projection (a mixin of SQLiteStore).

Every search has two parts. Entries below the index's high-water mark are
found through the projection: the full-text index, or the posting list of
the rarest term the query requires, walked newest first and checked
against the whole predicate on the ledger row. Entries at or above the mark
(committed, not yet indexed: normally well under a second's worth) are read
from the ledger directly, the predicate checked in SQL and the free text in
Python against the same document the indexer would write. So an
acknowledged entry is found whether or not the indexer has reached it.

`where` and the other predicates are compiled by kimonaudit.store.querysql
from constants only; every user value arrives as a bound parameter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from kimonaudit.core.projection import text_matches
from kimonaudit.core.records import ENTRY_COLUMNS, EntryRow
from kimonaudit.store.base import Driver, SearchSql
from kimonaudit.store.merge import MERGE_MIN, MERGE_SHARE, MERGE_TERMS, newest_matches
from kimonaudit.store.sqlite_index import SEQ_BITS, SEQ_MASK

_ENTRY_COLS = ", ".join(f"e.{c}" for c in ENTRY_COLUMNS[1:])
_SELECT = f"SELECT e.rid, {_ENTRY_COLS} FROM ledger e"  # noqa: S608
_PAGE = 1_000
# The work a newest-first walk may do, in thousands of SQLite VM steps
# (about 0.1 ms each here), before giving way to a plan that sorts.
_WALK_BUDGET = 60
_TEXT_BUDGET = 400
# A driver with more postings than this and several terms is not worth
# sorting: walking the ledger newest first finds common matches sooner
# (after the merge below has had its try, which every driver of several
# terms gets first).
_SORT_LIMIT = 50_000
# Such a driver is first tried as a merge of each term's newest postings
# (at least _MERGE_MIN per term, up to _MERGE_TERMS terms): a cold walk
# reads every ledger page back to the page's last match, one at a time.
_MERGE_TERMS = MERGE_TERMS
_MERGE_MIN = MERGE_MIN
_MERGE_SHARE = MERGE_SHARE


def _row(tenant_id: str, r: Sequence[Any]) -> EntryRow:
    return EntryRow(tenant_id, *r[1:7], bool(r[7]), *r[8:])


def text_ok(sql: SearchSql, row: EntryRow) -> bool:
    """Whether `row` satisfies the query's free text, as FTS5 phrases would."""
    return text_matches(sql.texts, row)


class SQLiteSearch:
    # Provided by SQLiteStore.
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def tenant_no(self, tenant_id: str) -> int:
        raise NotImplementedError

    def indexed_upto(self, tenant_id: str) -> int:
        raise NotImplementedError

    def wait_indexed(self, timeout: float = 60.0) -> bool:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------
    def _bounds(
        self, tenant_id: str, sql: SearchSql, after_seq: int, before_seq: int | None
    ) -> tuple[int, int, int, int]:
        """(base rid, low seq, high seq exclusive, index mark)."""
        base = self.tenant_no(tenant_id) << SEQ_BITS
        low = max(sql.seq_low, after_seq + 1, 0)
        high = SEQ_MASK + 1
        if sql.seq_high is not None:
            high = min(high, sql.seq_high)
        if before_seq is not None:
            high = min(high, before_seq)
        return base, low, high, self.indexed_upto(tenant_id)

    def _terms(
        self, conn: sqlite3.Connection, tenant_no: int, driver: Driver
    ) -> tuple[list[int], int]:
        """Term ids and their total postings for one driver."""
        ids: list[int] = []
        total = 0
        for field, mode, values in driver:
            if not values:
                continue
            if mode == "eq":
                marks = ",".join("?" * len(values))
                q = f"value IN ({marks})"
            elif mode == "range":
                q = "value BETWEEN ? AND ?"
            else:
                q = "value GLOB ?"
            for term, n in conn.execute(
                f"SELECT term, n FROM idx.terms WHERE tenant_no = ? AND field = ? AND {q}",  # noqa: S608
                (tenant_no, field, *values),
            ):
                ids.append(term)
                total += n
        return ids, total

    def _best_driver(
        self, conn: sqlite3.Connection, tenant_id: str, sql: SearchSql
    ) -> tuple[list[int], int] | None:
        best: tuple[list[int], int] | None = None
        for driver in sql.drivers:
            ids, total = self._terms(conn, self.tenant_no(tenant_id), driver)
            if best is None or total < best[1]:
                best = (ids, total)
        return best

    @staticmethod
    def _within_budget(
        conn: sqlite3.Connection, q: str, args: Sequence[object], budget: int
    ) -> list[Any] | None:
        """Rows of `q`, or None if SQLite needs more than `budget` thousand
        virtual-machine steps to produce them."""
        spent = 0

        def tick() -> int:
            nonlocal spent
            spent += 1
            return int(spent > budget)

        conn.set_progress_handler(tick, 1000)
        try:
            return conn.execute(q, args).fetchall()
        except sqlite3.OperationalError:
            if spent > budget:
                return None
            raise
        finally:
            conn.set_progress_handler(None, 0)

    # -- the un-indexed tail -----------------------------------------------------
    def _tail(
        self, tenant_id: str, sql: SearchSql, lo: int, hi: int, desc: bool, limit: int | None
    ) -> Iterator[EntryRow]:
        """Matches with rid in [lo, hi) read from the ledger itself."""
        order = "DESC" if desc else ""
        q = (
            f"{_SELECT} WHERE e.rid >= ? AND e.rid < ? AND ({sql.scan_where}) "
            f"ORDER BY e.rid {order}"
        )
        found = 0
        # Row by row, never fetchall: after an upgrade or a long indexer
        # outage the tail can be millions of entries, and a page needs only
        # its first `limit` matches.
        for r in self._conn().execute(q, (lo, hi, *sql.scan_params)):
            row = _row(tenant_id, r)
            if text_ok(sql, row):
                yield row
                found += 1
                if limit is not None and found >= limit:
                    return

    # -- one page, newest first ---------------------------------------------------
    def search_page(
        self, tenant_id: str, sql: SearchSql, limit: int, before_seq: int | None = None
    ) -> list[EntryRow]:
        base, low, high, mark = self._bounds(tenant_id, sql, -1, before_seq)
        if low >= high:
            return []
        out: list[EntryRow] = []
        if high > mark:
            out = list(self._tail(tenant_id, sql, base + max(low, mark), base + high, True, limit))
        if len(out) < limit and low < min(high, mark):
            out += self._indexed_page(
                tenant_id, sql, base + low, base + min(high, mark), limit - len(out)
            )
        return out

    def _indexed_page(
        self, tenant_id: str, sql: SearchSql, lo: int, hi: int, limit: int
    ) -> list[EntryRow]:
        conn = self._conn()
        if sql.text_match is not None:
            q = (
                f"{_SELECT} JOIN idx.entries_fts f ON e.rid = f.rowid "
                "WHERE entries_fts MATCH ? AND f.rowid >= ? AND f.rowid < ? "
                f"AND ({sql.rest_where}) ORDER BY f.rowid DESC LIMIT ?"
            )
            args: list[object] = [sql.text_match, lo, hi, *sql.rest_params, limit]
            rows = self._within_budget(conn, q, args, _TEXT_BUDGET)
            if rows is None:  # rare matches among many text hits: sort them
                q = (
                    f"{_SELECT} WHERE e.rid IN (SELECT rowid FROM idx.entries_fts "  # noqa: S608
                    "WHERE entries_fts MATCH ? AND rowid >= ? AND rowid < ?) "
                    f"AND ({sql.rest_where}) ORDER BY e.rid DESC LIMIT ?"
                )
                rows = conn.execute(q, args).fetchall()
            return [_row(tenant_id, r) for r in rows]
        best = self._best_driver(conn, tenant_id, sql)
        walk = (
            f"{_SELECT} WHERE e.rid >= ? AND e.rid < ? AND ({sql.where}) "
            "ORDER BY e.rid DESC LIMIT ?"
        )
        walk_args = [lo, hi, *sql.params, limit]
        if best is None:
            return [_row(tenant_id, r) for r in conn.execute(walk, walk_args)]
        ids, total = best
        if not ids:
            return []
        if len(ids) > 1:
            # Whatever the lists' lengths: a few small reads, where the sort
            # below looks up every posting's ledger row first. Only tried
            # above _SORT_LIMIT, `ip:198.51.100.0/24 is:failure` (two terms,
            # 23,000 postings at 1M entries) took 71 ms p50 sorted, 14 ms at
            # 200,000 entries, and 0.6 ms merged (2026-12-08).
            rows = self._merged(conn, ids, lo, hi, sql, limit)
            if rows is None and total > _SORT_LIMIT:
                rows = self._within_budget(conn, walk, walk_args, _WALK_BUDGET)
            if rows is not None:
                return [_row(tenant_id, r) for r in rows]
        q = (
            f"{_SELECT} JOIN idx.postings p ON e.rid = p.rid "
            f"WHERE p.term IN ({','.join('?' * len(ids))}) AND p.rid >= ? AND p.rid < ? "
            f"AND ({sql.where}) ORDER BY p.rid DESC LIMIT ?"
        )
        return [_row(tenant_id, r) for r in conn.execute(q, [*ids, lo, hi, *sql.params, limit])]

    @staticmethod
    def _merged(
        conn: sqlite3.Connection,
        ids: Sequence[int],
        lo: int,
        hi: int,
        sql: SearchSql,
        limit: int,
    ) -> list[Any] | None:
        """The newest `limit` matches in [lo, hi) of a driver with several
        terms, from each term's newest postings (kimonaudit.store.merge);
        None when that cannot decide (the caller walks or sorts instead)."""
        if len(set(ids)) > _MERGE_TERMS:
            return None
        one = (
            "SELECT * FROM (SELECT term, rid FROM idx.postings"
            " WHERE term = ? AND rid >= ? AND rid < ? ORDER BY rid DESC LIMIT ?)"
        )

        def read_newest(terms: list[int], k: int) -> list[tuple[int, int]]:
            args = [x for t in terms for x in (t, lo, hi, k)]
            return conn.execute(" UNION ALL ".join([one] * len(terms)), args).fetchall()

        def lookup(rids: list[int]) -> list[Any]:
            return conn.execute(
                f"{_SELECT} WHERE e.rid IN ({','.join('?' * len(rids))}) "
                f"AND ({sql.where}) ORDER BY e.rid DESC",
                [*rids, *sql.params],
            ).fetchall()

        return newest_matches(ids, lo, limit, read_newest, lookup, _MERGE_MIN, _MERGE_SHARE)

    # -- every match, oldest first -------------------------------------------------
    def iter_search(
        self, tenant_id: str, sql: SearchSql, after_seq: int = -1, before_seq: int | None = None
    ) -> Iterator[EntryRow]:
        base, low, high, mark = self._bounds(tenant_id, sql, after_seq, before_seq)
        if low >= high:
            return
        if low < min(high, mark):
            yield from self._iter_indexed(tenant_id, sql, base + low, base + min(high, mark))
        if high > mark:
            at: int | None = base + max(low, mark)
            while at is not None:
                at, rows = self._tail_page(tenant_id, sql, at, base + high)
                yield from rows

    def _tail_page(
        self, tenant_id: str, sql: SearchSql, lo: int, hi: int
    ) -> tuple[int | None, list[EntryRow]]:
        q = (
            f"{_SELECT} WHERE e.rid >= ? AND e.rid < ? AND ({sql.scan_where}) "
            "ORDER BY e.rid LIMIT ?"
        )
        raw = self._conn().execute(q, (lo, hi, *sql.scan_params, _PAGE)).fetchall()
        rows = [row for row in (_row(tenant_id, r) for r in raw) if text_ok(sql, row)]
        return (raw[-1][0] + 1 if len(raw) == _PAGE else None), rows

    def _iter_indexed(self, tenant_id: str, sql: SearchSql, lo: int, hi: int) -> Iterator[EntryRow]:
        conn = self._conn()
        if sql.text_match is not None:
            q = (
                f"{_SELECT} JOIN idx.entries_fts f ON e.rid = f.rowid "
                "WHERE entries_fts MATCH ? AND f.rowid >= ? AND f.rowid < ? "
                f"AND ({sql.rest_where}) ORDER BY f.rowid LIMIT ?"
            )
            make = lambda at: [sql.text_match, at, hi, *sql.rest_params, _PAGE]  # noqa: E731
        else:
            best = self._best_driver(conn, tenant_id, sql)
            if best is not None and not best[0]:
                return
            if best is None or (len(best[0]) > 1 and best[1] > _SORT_LIMIT):
                q = (
                    f"{_SELECT} WHERE e.rid >= ? AND e.rid < ? AND ({sql.where}) "
                    "ORDER BY e.rid LIMIT ?"
                )
                make = lambda at: [at, hi, *sql.params, _PAGE]  # noqa: E731
            else:
                ids = best[0]
                q = (
                    f"{_SELECT} JOIN idx.postings p ON e.rid = p.rid "
                    f"WHERE p.term IN ({','.join('?' * len(ids))}) AND p.rid >= ? "
                    f"AND p.rid < ? AND ({sql.where}) ORDER BY p.rid LIMIT ?"
                )
                make = lambda at: [*ids, at, hi, *sql.params, _PAGE]  # noqa: E731
        at = lo
        while True:
            rows = self._conn().execute(q, make(at)).fetchall()
            for r in rows:
                yield _row(tenant_id, r)
            if len(rows) < _PAGE:
                return
            at = rows[-1][0] + 1

    # -- counts ----------------------------------------------------------------------
    def _candidates(
        self, tenant_id: str, sql: SearchSql, lo: int, hi: int
    ) -> tuple[str, list[object]]:
        """A predicate over ``e`` for the indexed matches in [lo, hi)."""
        conn = self._conn()
        if sql.text_match is not None:
            return (
                "e.rid IN (SELECT rowid FROM idx.entries_fts WHERE entries_fts MATCH ? "  # noqa: S608
                f"AND rowid >= ? AND rowid < ?) AND ({sql.rest_where})",
                [sql.text_match, lo, hi, *sql.rest_params],
            )
        best = self._best_driver(conn, tenant_id, sql)
        if best is None or (len(best[0]) > 1 and best[1] > _SORT_LIMIT):
            return f"e.rid >= ? AND e.rid < ? AND ({sql.where})", [lo, hi, *sql.params]
        ids = best[0] or [-1]
        return (
            f"e.rid IN (SELECT rid FROM idx.postings WHERE term IN ({','.join('?' * len(ids))}) "  # noqa: S608
            f"AND rid >= ? AND rid < ?) AND ({sql.where})",
            [*ids, lo, hi, *sql.params],
        )

    def histogram(
        self, tenant_id: str, sql: SearchSql, width_us: int, origin_us: int
    ) -> list[tuple[int, int]]:
        base, low, high, mark = self._bounds(tenant_id, sql, -1, None)
        counts: dict[int, int] = {}
        if low < min(high, mark):
            where, args = self._candidates(tenant_id, sql, base + low, base + min(high, mark))
            q = (
                "SELECT (e.recorded_at - ?) / ? AS b, count(*) FROM ledger e "  # noqa: S608
                f"WHERE {where} GROUP BY b"
            )
            for b, n in self._conn().execute(q, [origin_us, width_us, *args]):
                counts[int(b)] = counts.get(int(b), 0) + int(n)
        if high > mark:
            for row in self._tail(tenant_id, sql, base + max(low, mark), base + high, False, None):
                b = (row.recorded_at - origin_us) // width_us
                counts[b] = counts.get(b, 0) + 1
        return sorted(counts.items())

    def count_matches(self, tenant_id: str, sql: SearchSql, before_seq: int | None = None) -> int:
        base, low, high, mark = self._bounds(tenant_id, sql, -1, before_seq)
        total = 0
        if low < min(high, mark):
            where, args = self._candidates(tenant_id, sql, base + low, base + min(high, mark))
            q = f"SELECT count(*) FROM ledger e WHERE {where}"  # noqa: S608
            total += int(self._conn().execute(q, args).fetchone()[0])
        if high > mark:
            total += sum(
                1
                for _ in self._tail(tenant_id, sql, base + max(low, mark), base + high, False, None)
            )
        return total

    # -- the plain reference ------------------------------------------------------------
    def search(
        self,
        tenant_id: str,
        where: str,
        params: Sequence[object],
        limit: int,
        before_seq: int | None = None,
    ) -> list[EntryRow]:
        """Newest first, by `where` alone over every entry: the reference the
        optimised paths are tested against. Free text in `where` goes through
        the full-text index, so this waits for the indexer first."""
        self.wait_indexed()
        base = self.tenant_no(tenant_id) << SEQ_BITS
        hi = base + (SEQ_MASK + 1 if before_seq is None else before_seq)
        q = f"{_SELECT} WHERE e.rid >= ? AND e.rid < ? AND ({where}) ORDER BY e.rid DESC LIMIT ?"
        return [_row(tenant_id, r) for r in self._conn().execute(q, [base, hi, *params, limit])]

    def count(self, tenant_id: str, where: str, params: Sequence[object]) -> int:
        self.wait_indexed()
        base = self.tenant_no(tenant_id) << SEQ_BITS
        q = f"SELECT count(*) FROM ledger e WHERE e.rid >= ? AND e.rid < ? AND ({where})"  # noqa: S608
        return int(self._conn().execute(q, [base, base + SEQ_MASK + 1, *params]).fetchone()[0])

    def seq_at(self, tenant_id: str, recorded_at: int) -> int | None:
        """Binary search on the ledger: recorded_at never decreases along seq."""
        conn = self._conn()
        base = self.tenant_no(tenant_id) << SEQ_BITS
        top = base + SEQ_MASK + 1

        def at(rid: int) -> tuple[int, int] | None:
            r = conn.execute(
                "SELECT rid, recorded_at FROM ledger WHERE rid >= ? AND rid < ?"
                " ORDER BY rid LIMIT 1",
                (rid, top),
            ).fetchone()
            return None if r is None else (int(r[0]), int(r[1]))

        first = at(base)
        if first is None:
            return None
        last = conn.execute(
            "SELECT rid, recorded_at FROM ledger WHERE rid >= ? AND rid < ?"
            " ORDER BY rid DESC LIMIT 1",
            (base, top),
        ).fetchone()
        if last[1] < recorded_at:
            return None
        # The smallest position x whose first entry at or after it was
        # recorded at or after `recorded_at`: monotone in x, so bisect.
        lo, hi = first[0], int(last[0])
        while lo < hi:
            mid = (lo + hi) // 2
            probe = at(mid)
            if probe is not None and probe[1] >= recorded_at:
                hi = mid
            else:
                lo = mid + 1
        found = at(lo)
        return None if found is None else found[0] & SEQ_MASK
