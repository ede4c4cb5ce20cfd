"""Group commit: one writer thread owns the write connection and merges
every append waiting for it into a single transaction.

Each request still sees a consistent tenant state (read under the lock,
inside the transaction) and the receipts of ids an earlier request in the
same group just wrote, so merging changes durability cost, never results.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from kimonaudit.core.records import AppendPlan, EntryRow, TreeState
from kimonaudit.errors import AuditLogError, StoreError
from kimonaudit.store.base import PlanBuilder

log = logging.getLogger(__name__)

# Enough to amortise a commit (an fsync) over many requests, small enough
# that one group does not hold the write lock for long.
MAX_GROUP_EVENTS = 20_000


class StaleState(StoreError):
    """A session handed out a tenant state it remembered instead of reading
    it under the lock, and found at commit that the state had changed
    (another process appended or purged): the group's plans were built on
    it, so the writer builds them again once, the session reading this time."""


class CommitUnknown(StoreError):
    """The connection was lost after a group's COMMIT was sent and before its
    answer came: the group may be stored or not. Every request of the group
    gets this error, and the writer does not run them again (a second run
    could store them twice; a caller retrying with its own event ids gets
    the original receipts if the first run did land)."""


class WriteSession(Protocol):
    """The primitives a backend gives the writer, on its write connection."""

    def begin(self) -> None: ...
    def lock_state(self, tenant_id: str) -> TreeState: ...
    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, EntryRow]: ...
    def write_all(self, plans: Sequence[AppendPlan]) -> None:
        """Write `plans`, built one after the other (so each tenant's seqs
        run on from plan to plan), as if each were written in turn."""
        ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Request:
    tenant_id: str
    event_ids: Sequence[str]
    build: PlanBuilder
    # Run on the writer thread after the commit; its value is the future's.
    then: Callable[[AppendPlan], Any] | None = None
    future: Future[Any] = field(default_factory=Future)

    def done(self, plan: AppendPlan) -> None:
        if self.then is None:
            self.future.set_result(plan)
            return
        try:
            result = self.then(plan)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


@dataclass
class _Task:
    """Other work on the write connection (the retention purge's deletes),
    in a transaction of its own between two groups of appends."""

    fn: Callable[[Any], Any]
    transaction: bool = True
    future: Future[Any] = field(default_factory=Future)


_STOP = object()
T = TypeVar("T")


class GroupCommitWriter:
    def __init__(
        self,
        session: WriteSession,
        name: str = "kimonaudit-writer",
        tasks: WriteSession | None = None,
    ) -> None:
        self._session = session
        # Other work on the write connection (`run`) may go to a session of
        # its own: SQLite's appends use a native connection (store/sqlite.py).
        self._tasks = session if tasks is None else tasks
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self.groups = 0  # commits made; with `requests`, shows how much merging happens
        self.requests = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, tenant_id: str, event_ids: Sequence[str], build: PlanBuilder) -> AppendPlan:
        plan: AppendPlan = self.submit_future(tenant_id, event_ids, build).result()
        return plan

    def submit_future(
        self,
        tenant_id: str,
        event_ids: Sequence[str],
        build: PlanBuilder,
        then: Callable[[AppendPlan], Any] | None = None,
    ) -> Future[Any]:
        """Queue an append; the future completes after its group's commit
        with the plan, or with `then(plan)` when given (`then` and the
        future's callbacks run on the writer thread)."""
        if self._closed:
            raise StoreError("the store is closed")
        req = _Request(tenant_id, event_ids, build, then)
        self._queue.put(req)
        return req.future

    def run(self, fn: Callable[[Any], T], *, transaction: bool = True) -> T:
        """Run `fn(session)` on the writer thread, inside a transaction of its
        own (unless `transaction` is false: `fn` then commits its own work),
        queued with the appends: an append that arrives meanwhile
        waits for this one transaction and goes next, instead of polling
        for the database's write lock (SQLite's busy handler backs off up
        to 100 ms at a time, so a steady stream of short transactions from
        another connection can keep it waiting far longer than any one)."""
        if self._closed:
            raise StoreError("the store is closed")
        task = _Task(fn, transaction)
        self._queue.put(task)
        result: T = task.future.result()
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._session.close()
        if self._tasks is not self._session:
            self._tasks.close()

    # -- writer thread -----------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Task):
                self._run_task(item)
                continue
            group = [item]
            events = len(item.event_ids)  # type: ignore[attr-defined]
            stop = False
            task: _Task | None = None
            while events < MAX_GROUP_EVENTS:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                if isinstance(nxt, _Task):  # in arrival order: after this group
                    task = nxt
                    break
                group.append(nxt)
                events += len(nxt.event_ids)  # type: ignore[attr-defined]
            self._commit_group(group)  # type: ignore[arg-type]
            if task is not None:
                self._run_task(task)
            if stop:
                return

    def _run_task(self, task: _Task) -> None:
        s = self._tasks
        try:
            if task.transaction:
                s.begin()
            result = task.fn(s)
            if task.transaction:
                s.commit()
        except Exception as exc:
            try:
                s.rollback()
            except Exception:
                log.debug("rollback failed", exc_info=True)
            if not isinstance(exc, AuditLogError):
                exc = StoreError(f"write failed: {exc.__class__.__name__}: {exc}")
            task.future.set_exception(exc)
            return
        task.future.set_result(result)

    def _commit_group(self, group: list[_Request]) -> None:
        try:
            try:
                results = self._apply(group)
            except StaleState:
                log.debug("a remembered tenant state was stale; building the group again")
                results = self._apply(group)
        except CommitUnknown as exc:
            for req in group:
                self._fail(req, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                self._fail(group[0], exc)
                return
            log.debug("group commit of %d requests failed; retrying one by one", len(group))
            for req in group:
                try:
                    (result,) = self._apply([req])
                except Exception as exc:
                    self._fail(req, exc)
                else:
                    self._settle(req, result)
            return
        for req, res in zip(group, results, strict=True):
            self._settle(req, res)

    def _settle(self, req: _Request, result: AppendPlan | BaseException) -> None:
        # A plan that could not be built (bad input found under the lock)
        # comes back as its error, from a group and when retried alone.
        if isinstance(result, BaseException):
            req.future.set_exception(result)
        else:
            req.done(result)

    def _fail(self, req: _Request, exc: BaseException) -> None:
        if not isinstance(exc, AuditLogError):
            log.error("append failed: %s", exc.__class__.__name__, exc_info=exc)
            exc = StoreError(f"append failed: {exc.__class__.__name__}: {exc}")
        req.future.set_exception(exc)

    def _apply(self, group: list[_Request]) -> list[AppendPlan | BaseException]:
        """One transaction for the group. A request whose plan cannot be built
        (bad input found under the lock) fails alone; a database error aborts
        the whole transaction and the caller retries requests one by one."""
        s = self._session
        results: list[AppendPlan | BaseException] = []
        states: dict[str, TreeState] = {}
        try:
            s.begin()
            # Lock tenants in a fixed order so two processes appending to
            # the same tenants cannot deadlock.
            for tid in sorted({r.tenant_id for r in group}):
                states[tid] = s.lock_state(tid)
            # The group's plans are written together at the end, in a few
            # statements rather than a few per request: each statement lets
            # go of the interpreter lock, and getting it back from a busy
            # event loop can take a switch interval. A request whose client
            # ids may be among those still unwritten writes them first, so
            # that its idempotency lookup sees them.
            pending: list[AppendPlan] = []
            pending_ids: dict[str, set[str]] = {}
            for req in group:
                tid = req.tenant_id
                existing: Mapping[str, EntryRow] = {}
                if req.event_ids:
                    unwritten = pending_ids.get(tid)
                    if unwritten and not unwritten.isdisjoint(req.event_ids):
                        s.write_all(pending)
                        pending.clear()
                        pending_ids.clear()
                    existing = s.existing(tid, req.event_ids)
                try:
                    plan = req.build(states[tid], existing)
                except AuditLogError as exc:
                    results.append(exc)
                    continue
                pending.append(plan)
                pending_ids.setdefault(tid, set()).update(r.id for r in plan.receipts)
                states[tid] = plan.state
                results.append(plan)
            if pending:
                s.write_all(pending)
            s.commit()
        except BaseException:
            try:
                s.rollback()
            except Exception:
                log.debug("rollback failed", exc_info=True)
            raise
        self.groups += 1
        self.requests += len(group)
        return results


class QueuedAppends:
    """A store's `append` and `append_future` through its GroupCommitWriter
    (`_writer`), waking its indexer (`_indexer`, if any) after each commit."""

    _writer: GroupCommitWriter
    _indexer: Any

    def append(self, tenant_id: str, event_ids: Sequence[str], build: PlanBuilder) -> AppendPlan:
        plan: AppendPlan = self.append_future(tenant_id, event_ids, build).result()
        return plan

    def append_future(
        self,
        tenant_id: str,
        event_ids: Sequence[str],
        build: PlanBuilder,
        then: Callable[[AppendPlan], Any] | None = None,
    ) -> Future[Any]:
        future = self._writer.submit_future(tenant_id, event_ids, build, then)
        if self._indexer is not None:
            future.add_done_callback(self._committed)
        return future

    def _committed(self, _: Future[Any]) -> None:
        if self._indexer is not None:
            self._indexer.notify()
