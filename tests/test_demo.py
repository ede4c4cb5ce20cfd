"""`kimonaudit demo`: a realistic helpdesk history written through the
public append path with a simulated clock."""

from __future__ import annotations

import ipaddress
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import kimonaudit
from kimonaudit.cli import cli, main
from kimonaudit.core.records import EntryRow
from kimonaudit.core.timefmt import to_us
from kimonaudit.demo import SimClock, simulate
from kimonaudit.demo.run import DemoSummary
from kimonaudit.demo.world import PROFILES
from kimonaudit.errors import ConfigError, InvalidInput
from kimonaudit.search import search
from kimonaudit.service import AuditLog

END = datetime(2026, 3, 4, 17, 30, tzinfo=UTC)
EVENTS = 3_000
US_PER_DAY = 86_400_000_000
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


@dataclass
class Demo:
    url: str
    key_file: str
    summary: DemoSummary

    def open(self) -> AuditLog:
        """The filled log, its clock standing at the end of the history."""
        return kimonaudit.open(self.url, key_file=self.key_file, clock=SimClock(END))

    def tenant_id(self, name: str) -> str:
        return next(t.id for t in self.summary.tenants if t.name == name)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo")
    url, key_file = f"sqlite:///{path / 'demo.db'}", str(path / "demo.key")
    clock = SimClock(END)
    seen: list[tuple[int, int]] = []
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        summary = simulate(
            log,
            clock,
            events=EVENTS,
            end=END,
            seed=7,
            progress=lambda done, total: seen.append((done, total)),
        )
    assert seen[-1] == (EVENTS, EVENTS)
    return Demo(url, key_file, summary)


@pytest.fixture(scope="module")
def entries(demo: Demo) -> dict[str, list[EntryRow]]:
    with demo.open() as log:
        return {t.name: list(log.store.iter_entries(t.id)) for t in demo.summary.tenants}


def payload(row: EntryRow) -> dict[str, Any]:
    assert row.payload is not None
    return dict(json.loads(row.payload))


def local(us: int, offset_hours: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC) + timedelta(hours=offset_hours)


def test_three_tenants_on_free_team_and_enterprise(demo: Demo) -> None:
    """Acme Support (enterprise), Globex Helpdesk (team) and Initech IT (free) exist."""
    with demo.open() as log:
        listed = {t.name: t.plan for t in log.list_tenants()}
    assert listed == {"Acme Support": "enterprise", "Globex Helpdesk": "team", "Initech IT": "free"}
    assert [t.plan for t in demo.summary.tenants] == ["enterprise", "team", "free"]


def test_volume_goes_mostly_to_the_main_tenant(
    demo: Demo, entries: dict[str, list[EntryRow]]
) -> None:
    """Exactly N events (plus one API-key entry each), 3/4 in Acme; counts match the log."""
    sizes = {name: len(rows) for name, rows in entries.items()}
    assert sizes == {"Acme Support": 2_251, "Globex Helpdesk": 601, "Initech IT": 151}
    for t in demo.summary.tenants:
        assert t.events == sizes[t.name]
        assert t.actions == dict(Counter(r.action for r in entries[t.name]))
    assert demo.summary.events == EVENTS + 3


def test_ticket_views_dominate_the_mix(demo: Demo) -> None:
    """Ticket views lead at about half the volume; every activity the issue lists occurs."""
    actions = demo.summary.actions
    assert next(iter(actions)) == "ticket.viewed"
    assert 0.40 <= actions["ticket.viewed"] / demo.summary.events <= 0.60
    for action in (
        "ticket.field_changed",
        "macro.applied",
        "api.request",
        "auth.login.succeeded",
        "auth.login.failed",
        "export.requested",
        "export.downloaded",
        "role.assigned",
        "role.revoked",
    ):
        assert actions.get(action, 0) > 0, action
    assert any(a.startswith("workflow.") for a in actions)


def test_history_spans_fourteen_months_with_working_day_rhythm(
    entries: dict[str, list[EntryRow]],
) -> None:
    """recorded_at spans ~14 months, mostly weekday working hours, few weekends or nights."""
    offset = PROFILES[0].utc_offset_hours
    rows = entries["Acme Support"]
    first, last = rows[0].recorded_at, rows[-1].recorded_at
    assert 13.5 * 30 * US_PER_DAY < last - first <= 14.1 * 30.5 * US_PER_DAY
    assert last <= to_us(END)
    assert all(a.recorded_at <= b.recorded_at for a, b in itertools.pairwise(rows))
    times = [local(r.recorded_at, offset) for r in rows]
    working = sum(1 for d in times if d.weekday() < 5 and 8 <= d.hour < 18) / len(times)
    weekend = sum(1 for d in times if d.weekday() >= 5) / len(times)
    night = sum(1 for d in times if d.hour < 6) / len(times)
    assert working > 0.6, working
    assert weekend < 0.12, weekend
    assert night < 0.05, night


def test_each_event_keeps_its_own_time_before_its_batch_was_recorded(
    demo: Demo, entries: dict[str, list[EntryRow]]
) -> None:
    """occurred_at is each event's own time, at most one shipping window before recorded_at."""
    for t in demo.summary.tenants:
        window = (t.flush_seconds + 2) * 1_000_000
        assert 60 <= t.flush_seconds <= 4 * 3600
        rows = [r for r in entries[t.name] if r.action != "auth.api_token.created"]
        for r in rows:
            assert r.occurred_at is not None
            assert r.occurred_at <= r.recorded_at <= r.occurred_at + window
        assert len({r.occurred_at for r in rows}) > 0.99 * len(rows)


def test_ticket_ids_grow_over_time(entries: dict[str, list[EntryRow]]) -> None:
    """Tickets viewed in the last month are numbered above those of the first month."""
    views = [r for r in entries["Acme Support"] if r.action == "ticket.viewed"]
    cut = 30 * US_PER_DAY
    early = [int(r.target_id or 0) for r in views if r.recorded_at < views[0].recorded_at + cut]
    late = [int(r.target_id or 0) for r in views if r.recorded_at > views[-1].recorded_at - cut]
    assert early and late
    assert max(early) < min(late)


def test_failed_logins_come_in_bursts_from_one_address(
    entries: dict[str, list[EntryRow]],
) -> None:
    """Some address fails to sign in 3 times within 10 minutes, each with outcome failure."""
    bursts = 0
    for rows in entries.values():
        by_ip: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            if r.action == "auth.login.failed":
                assert r.outcome == "failure"
                assert r.occurred_at is not None
                by_ip[payload(r)["context"]["ip"]].append(r.occurred_at)
        for times in by_ip.values():
            times.sort()
            bursts += any(b - a <= 600_000_000 for a, b in zip(times, times[2:], strict=False))
    assert bursts >= 1


def test_who_viewed_ticket_10482_has_answers(demo: Demo) -> None:
    """The README's 'who viewed ticket 10482' finds several named agents in Acme."""
    tid = demo.tenant_id("Acme Support")
    with demo.open() as log:
        page = search(log, tid, "action:ticket.viewed target:ticket:10482", limit=100)
        viewers = {log.resolve_actor(tid, r.actor_hash) for r in page.entries if r.actor_hash}
    names = {a.name for a in viewers if a is not None}
    assert len(names) >= 4, names


def test_who_changed_roles_last_week_has_answers(demo: Demo) -> None:
    """Search finds several role changes in the last seven days, each with from/to roles."""
    tid = demo.tenant_id("Acme Support")
    with demo.open() as log:
        page = search(log, tid, "action:role.* created:>-7d", limit=100)
        rows = list(page.entries)
    assert len(rows) >= 3
    for r in rows:
        assert r.recorded_at >= to_us(END) - 7 * US_PER_DAY
        (change,) = payload(r)["changes"]
        assert change["field"] == "roles" and change["from"] != change["to"]


def test_events_look_like_a_helpdesk(entries: dict[str, list[EntryRow]]) -> None:
    """Changes have from/to, API calls method/route/status/duration; exports pair; doc IPs."""
    rows = entries["Acme Support"]
    exports: Counter[str] = Counter()
    for r in rows:
        p = payload(r)
        if r.action == "ticket.field_changed":
            assert p["changes"] and all(c["from"] != c["to"] for c in p["changes"])
            assert {c["field"] for c in p["changes"]} <= {
                "status",
                "priority",
                "assignee",
                "group",
                "tags",
            }
        elif r.action == "macro.applied":
            assert p["metadata"]["macro_id"] and p["metadata"]["macro_title"]
        elif r.action == "api.request":
            assert set(p["metadata"]) == {"method", "route", "status", "duration_ms"}
            assert r.actor_type == "api_client"
        elif r.action.startswith("export."):
            exports[r.action] += 1
        ip = p["context"].get("ip")
        if ip is not None:
            assert any(ipaddress.ip_address(ip) in net for net in DOC_NETS), ip
    assert exports["export.requested"] == exports["export.downloaded"] > 0


def test_staff_have_names_and_emails_on_the_tenant_domain(demo: Demo) -> None:
    """Staff have names and .test addresses; the docs' agent_42 exists in Acme Support."""
    tid = demo.tenant_id("Acme Support")
    with demo.open() as log:
        a42 = log.resolve_actor(tid, log.actor_hash(tid, "agent_42"))
        people = [log.resolve_actor(tid, log.actor_hash(tid, f"agent_{n}")) for n in range(1, 49)]
    assert a42 is not None and a42.email is not None
    assert a42.email.endswith("@acme-support.test")
    assert a42.name is not None and " " in a42.name
    known = [p for p in people if p is not None]
    assert len(known) >= 40
    assert {p.actor_type for p in known} == {"agent", "admin"}


def test_the_log_verifies_with_daily_checkpoints(demo: Demo) -> None:
    """Every tenant's log verifies, with the checkpoints cut along the simulated history."""
    with demo.open() as log:
        for t in demo.summary.tenants:
            report = log.verify(t.id)
            assert report.ok, report.problems
            assert report.tree_size == t.events
            assert report.checkpoints_checked > 30


def test_admin_api_keys_work_for_their_tenant(demo: Demo) -> None:
    """Each printed key authenticates as an admin of its own tenant."""
    with demo.open() as log:
        for t in demo.summary.tenants:
            tenant_id, scopes = log.authenticate(t.api_key)
            assert tenant_id == t.id
            assert "admin" in scopes


def test_same_seed_same_history(tmp_path: Path) -> None:
    """One seed and end give identical entries (ids and salts aside); another seed does not."""

    def run(name: str, seed: int) -> list[tuple[object, ...]]:
        clock = SimClock(END)
        url = f"sqlite:///{tmp_path / name}"
        with kimonaudit.open(url, key_file=str(tmp_path / "k"), clock=clock) as log:
            s = simulate(log, clock, events=1_000, months=2, end=END, seed=seed)
            tid = s.tenants[0].id
            people: dict[str, object] = {}  # actor hashes are keyed per tenant
            out: list[tuple[object, ...]] = []
            for r in log.store.iter_entries(tid):
                if r.action == "auth.api_token.created":
                    continue  # made "now" with a random key id
                if r.actor_hash and r.actor_hash not in people:
                    a = log.resolve_actor(tid, r.actor_hash)
                    people[r.actor_hash] = a and (a.actor_id, a.name, a.email)
                who = people.get(r.actor_hash or "")
                out.append((r.recorded_at, r.action, r.target_id, who, r.payload))
            return out

    first = run("a.db", 1)
    assert run("b.db", 1) == first
    assert run("c.db", 2) != first


def test_refuses_a_second_run_unless_forced(tmp_path: Path) -> None:
    """Demo tenants are not added twice unless forced; then a numbered set is added."""
    url, key_file = f"sqlite:///{tmp_path / 'x.db'}", str(tmp_path / "k")
    clock = SimClock(END)
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        simulate(log, clock, events=1_000, months=1, end=END)
        with pytest.raises(InvalidInput, match="--force"):
            simulate(log, clock, events=1_000, months=1, end=END)
        again = simulate(log, clock, events=1_000, months=1, end=END, force=True)
        assert [t.name for t in again.tenants] == [
            "Acme Support (2)",
            "Globex Helpdesk (2)",
            "Initech IT (2)",
        ]
        assert len(log.list_tenants()) == 6


def test_bad_sizes_and_a_foreign_clock_are_refused(tmp_path: Path) -> None:
    """Too few events, a bad span or a log on another clock are refused; nothing is written."""
    url, key_file = f"sqlite:///{tmp_path / 'y.db'}", str(tmp_path / "k")
    clock = SimClock(END)
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        with pytest.raises(InvalidInput, match="at least 1000"):
            simulate(log, clock, events=10)
        with pytest.raises(InvalidInput, match="months"):
            simulate(log, clock, months=0)
    with kimonaudit.open(url, key_file=key_file) as log:
        with pytest.raises(ConfigError, match="clock"):
            simulate(log, clock, events=1_000)
        assert log.list_tenants() == []


@pytest.fixture
def cli_db(tmp_path: Path) -> Iterator[list[str]]:
    yield ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--key-file", str(tmp_path / "cli.key")]


def test_cli_demo_prints_tenants_keys_and_console(cli_db: list[str]) -> None:
    """`kimonaudit demo` exits 0, printing each tenant, its API key and the console address."""
    result = CliRunner().invoke(cli, [*cli_db, "demo", "--events", "1000", "--months", "2"])
    assert result.exit_code == 0, result.output
    assert "Acme Support (enterprise): tenant t_" in result.output
    assert result.output.count("admin API key (shown once): kak_") == 3
    assert "http://127.0.0.1:8080/console/" in result.output


def test_cli_demo_prints_the_console_address_it_is_given(cli_db: list[str]) -> None:
    """scripts/run.sh passes serve's --host/--port on: the sign-in link names them."""
    args = [*cli_db, "demo", "--events", "1000", "--months", "1"]
    result = CliRunner().invoke(cli, [*args, "--console-url", "http://127.0.0.1:9000/console"])
    assert result.exit_code == 0, result.output
    assert "sign in at http://127.0.0.1:9000/console/signin?tenant=t_" in result.output
    assert "8080" not in result.output


def test_cli_demo_json_and_refusal_exit_codes(
    cli_db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Through main: --json gives tenants and keys; a second run without --force exits 2."""
    main([*cli_db, "demo", "--events", "1000", "--months", "1", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert [t["plan"] for t in data["tenants"]] == ["enterprise", "team", "free"]
    assert all(t["api_key"].startswith("kak_") for t in data["tenants"])
    assert data["console"] == "http://127.0.0.1:8080/console/"
    with pytest.raises(SystemExit) as exc:
        main([*cli_db, "demo", "--events", "1000", "--months", "1"])
    assert exc.value.code == 2
    assert "--force" in capsys.readouterr().err
