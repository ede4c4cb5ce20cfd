"""SQLite reader connections are bounded (issue 10, item 9): one per live
thread, closed when its thread ends, each with a small page cache, and all
of SQLite's memory in the process under a soft heap limit."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import kimonaudit
from kimonaudit.store.sqlite import READER_CACHE_KIB, SOFT_HEAP_LIMIT, SQLiteStore


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """Fifty short-lived threads each read once: afterwards their fifty
    connections are gone, not kept for the life of the store."""
    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k")) as log:
        t = log.create_tenant("acme").id
        log.append(t, [{"action": "ticket.viewed"}])
        store = log.store
        assert isinstance(store, SQLiteStore)

        def read() -> None:
            assert store.tree_state(t).size == 1

        read()
        # The main thread's and any background thread's (the indexer's) stay.
        before = store.reader_connections()

        for _ in range(5):
            threads = [threading.Thread(target=read) for _ in range(10)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        del threads, th  # a finished thread's connection goes with its Thread object
        for _ in range(50):
            gc.collect()
            if store.reader_connections() <= before + 1:
                break
            time.sleep(0.05)
        assert store.reader_connections() <= before + 1


def test_reader_connections_have_a_small_cache_and_a_heap_limit(tmp_path: Path) -> None:
    """A reader's page cache is READER_CACHE_KIB; SQLite's soft heap limit is set."""
    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k")) as log:
        conn = log.store._conn()  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -READER_CACHE_KIB
        assert conn.execute("PRAGMA soft_heap_limit").fetchone()[0] == SOFT_HEAP_LIMIT


def test_the_wal_is_checkpointed_off_the_commit_path_and_stays_bounded(
    tmp_path: Path, monkeypatch
) -> None:
    """A background thread copies the WAL into the database file between
    group commits; the committing connection checkpoints itself only past
    WAL_AUTOCHECKPOINT pages, so the WAL stays bounded while appends run."""
    import os

    from kimonaudit.store import sqlite as sqlite_store
    from tests.helpers import event

    monkeypatch.setattr(sqlite_store, "WAL_AUTOCHECKPOINT", 64)
    path = tmp_path / "a.db"
    with kimonaudit.open(f"sqlite:///{path}", key_file=str(tmp_path / "k")) as log:
        t = log.create_tenant("acme").id
        monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 3600.0)  # not yet
        sizes = []
        for b in range(30):
            log.append(t, [event(b * 200 + i) for i in range(200)])
            sizes.append(os.path.getsize(f"{path}-wal"))
        page = 4096
        # Bounded by the threshold plus one group commit's pages, never 30 batches'.
        assert max(sizes) < (64 + 400) * (page + 24)
        assert isinstance(log.store, SQLiteStore)
        assert log.store._checkpointer.passes <= 1  # (one may have started before the patch)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.05)
    with kimonaudit.open(f"sqlite:///{path}", key_file=str(tmp_path / "k")) as log:
        store = log.store
        assert isinstance(store, SQLiteStore)
        for b in range(5):
            log.append(t, [event(10_000 + b * 200 + i) for i in range(200)])
            time.sleep(0.15)
        # The background thread copied frames without anyone asking.
        assert store._checkpointer.passes >= 2


def test_ledger_writes_do_not_wait_for_the_index_files_write_lock(tmp_path: Path) -> None:
    """The indexer holds the index file's write lock for a batch (a stalled
    or stopped indexer, for as long as it stalls). Writes to the ledger
    file alone (a new actor's secret, a new tenant, a checkpoint, the
    append that meets the actor) must not wait for it: BEGIN IMMEDIATE on
    a connection with the index attached locked both files, and such an
    append waited the busy timeout, 30 s."""
    import sqlite3

    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k")) as log:
        t = log.create_tenant("acme").id
        log.append(t, [{"action": "ticket.viewed", "actor": {"id": "a1", "type": "agent"}}])
        store = log.store
        assert isinstance(store, SQLiteStore)
        assert store.wait_indexed(30)
        holder = sqlite3.connect(store.index_file, isolation_level=None, timeout=1)
        holder.execute("BEGIN IMMEDIATE")  # what the indexer does for each batch
        done: list[str] = []

        def writes() -> None:
            log.append(t, [{"action": "ticket.viewed", "actor": {"id": "new-1", "type": "agent"}}])
            log.create_tenant("beta")
            log.checkpoint(t)
            done.append("all")

        worker = threading.Thread(target=writes, daemon=True)
        worker.start()
        worker.join(10)
        in_time = list(done)
        holder.execute("ROLLBACK")
        holder.close()
        worker.join(40)
        assert in_time == ["all"], "the ledger writes waited for the index file's lock"
        # Search still covers the new entry (the indexer resumes, or the tail scan finds it).
        assert len(log.search(t, "actor:new-1")) == 1


def test_administrative_transactions_roll_back_and_take_turns(tmp_path: Path) -> None:
    """`_admin_tx` commits a block that ends and rolls back one that raises
    (nothing of it stays, and the process's write lock is free again);
    while one runs, the lock is held, so another thread waits on it rather
    than in SQLite's busy handler."""
    import pytest

    from kimonaudit.errors import Conflict

    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k")) as log:
        store = log.store
        assert isinstance(store, SQLiteStore)
        t = log.create_tenant("acme").id
        with pytest.raises(RuntimeError), store._admin_tx() as conn:
            assert store._write_lock.locked()
            conn.execute("UPDATE tenants SET name = 'changed' WHERE tenant_id = ?", (t,))
            raise RuntimeError("half-way")
        assert not store._write_lock.locked()
        assert log.get_tenant(t).name == "acme"
        # A constraint failure (the second of two inserts): rolled back
        # whole, and reported as a Conflict.
        with pytest.raises(Conflict):
            log.create_tenant("again", tenant_id=t)
        assert not store._write_lock.locked()
        assert [(x.id, x.name) for x in log.list_tenants()] == [(t, "acme")]

        waited: list[bool] = []

        def second() -> None:
            waited.append(store._write_lock.locked())
            log.set_legal_hold(t, True)  # an administrative write of its own

        with store._admin_tx() as conn:
            worker = threading.Thread(target=second)
            worker.start()
            time.sleep(0.2)
            assert worker.is_alive()  # waiting for the lock
            conn.execute("UPDATE tenants SET name = 'first' WHERE tenant_id = ?", (t,))
        worker.join(10)
        assert waited == [True] and not worker.is_alive()
        tenant = log.get_tenant(t)
        assert tenant.name == "first" and tenant.legal_hold
