"""The console's small parts on their own: sign-in throttle, password
hashing, filter chips and the chart's geometry."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.console import chart, chips
from kimonaudit.console.passwords import Passwords, check_password, generate_password
from kimonaudit.console.throttle import Limits, SignInThrottle
from kimonaudit.core.query import parse
from kimonaudit.errors import InvalidInput


class Tick:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _throttle(**kw: float) -> tuple[SignInThrottle, Tick]:
    clock = Tick()
    return SignInThrottle(Limits(**kw), clock=clock), clock  # type: ignore[arg-type]


# -- throttle -----------------------------------------------------------------------
def test_lockout_doubles_with_each_failure_past_the_free_ones() -> None:
    """1 s, 2 s, 4 s ... after the free failures, capped."""
    t, clock = _throttle(account_free=2, ip_free=1000, base=1.0, cap=8.0)
    acct, ip = t.account_key("t", "a@x"), t.ip_key("192.0.2.1")
    waits = []
    for _ in range(7):
        t.failed(acct, ip)
        waits.append(t.check(acct, ip).wait)
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    clock.t += 8.0
    assert t.check(acct, ip).wait == 0.0


def test_first_refusal_of_a_lock_is_flagged_once() -> None:
    """So a flood of refused attempts is logged once per lock, not per attempt."""
    t, clock = _throttle(account_free=0, base=10.0)
    acct, ip = t.account_key("t", "a@x"), t.ip_key("192.0.2.1")
    t.failed(acct, ip)
    assert [t.check(acct, ip).first_refusal for _ in range(3)] == [True, False, False]
    clock.t += 11
    t.failed(acct, ip)
    assert t.check(acct, ip).first_refusal


def test_success_clears_the_account_but_not_the_address() -> None:
    """A good sign-in resets its account's count; the address keeps its own."""
    t, _ = _throttle(account_free=2, ip_free=3, base=5.0)
    ip = t.ip_key("192.0.2.1")
    a, b = t.account_key("t", "a@x"), t.account_key("t", "b@x")
    t.failed(a, ip)
    t.failed(a, ip)
    t.succeeded(a)
    assert t.check(a, t.ip_key("192.0.2.9")).wait == 0
    t.failed(b, ip)
    assert t.check(b, ip).wait == 5.0  # the address's third failure locks it


def test_failures_are_forgotten_after_a_quiet_hour() -> None:
    """Old failures stop counting after `forget_after`."""
    t, clock = _throttle(account_free=2, base=1.0, forget_after=60.0)
    acct, ip = t.account_key("t", "a@x"), t.ip_key(None)
    t.failed(acct, ip)
    clock.t += 61
    t.failed(acct, ip)
    assert t.check(acct, ip).wait == 0


def test_memory_is_bounded() -> None:
    """At most max_keys keys are kept; the oldest go first."""
    t, _ = _throttle(max_keys=10)
    for i in range(50):
        t.failed(t.account_key("t", f"{i}@x"), t.ip_key(f"192.0.2.{i}"))
    assert len(t._counts) == 10


def test_account_keys_ignore_case_and_spaces() -> None:
    """`Ann@X ` and `ann@x` are one account for throttling."""
    assert SignInThrottle.account_key("t", " Ann@X ") == SignInThrottle.account_key("t", "ann@x")
    assert SignInThrottle.account_key("t1", "a@x") != SignInThrottle.account_key("t2", "a@x")


# -- passwords ----------------------------------------------------------------------
def test_passwords_are_argon2id_and_verify() -> None:
    """Hashes are argon2id PHC strings; verify accepts only the password."""
    p = Passwords(1, 1024, 1)
    h = p.hash("correct horse battery")
    assert h.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert p.verify(h, "correct horse battery")
    assert not p.verify(h, "correct horse batterY")
    assert not p.verify(None, "correct horse battery")
    assert not p.verify("not a hash", "x" * 10)
    assert not p.needs_rehash(h)
    assert Passwords(2, 1024, 1).needs_rehash(h)


def test_password_rules_are_length_only() -> None:
    """10 to 1024 characters, no NUL; generated passwords qualify."""
    for bad in ("", "123456789", "x" * 1025, "abcdefghij\x00"):
        with pytest.raises(InvalidInput):
            check_password(bad)
    assert check_password("ten chars!") == "ten chars!"
    pw = generate_password()
    assert check_password(pw) == pw and pw != generate_password()


# -- chips --------------------------------------------------------------------------
def test_chip_toggles_its_term() -> None:
    """A preset adds its term, and removes it when present in any spelling."""
    assert chips.toggled("action:role.*", "is:security") == "action:role.* is:security"
    assert chips.toggled("IS:Security action:role.*", "is:security") == "action:role.*"
    assert chips.toggled("", "is:security") == "is:security"
    assert chips.toggled("bad:", "is:security") == "bad: is:security"


def test_presets_and_current_terms() -> None:
    """Active presets are marked; each current term links to the query without it."""
    on = {c.label for c in chips.presets("is:security created:>-7d") if c.active}
    assert on == {"Security only", "Last 7 days"}
    assert [(c.label, c.query) for c in chips.current("a -b is:failure")] == [
        ("a", "-b is:failure"),
        ("-b", "a is:failure"),
        ("is:failure", "a -b"),
    ]
    assert chips.security_only("x is:security") and not chips.security_only("x")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([t for _, t in chips.PRESETS]), max_size=5))
def test_toggling_twice_changes_nothing(terms: list[str]) -> None:
    """Clicking a chip twice gives back the same terms (possibly reordered)."""
    q = " ".join(dict.fromkeys(terms))
    for _, term in chips.PRESETS:
        twice = parse(chips.toggled(chips.toggled(q, term), term))
        assert set(twice.terms) == set(parse(q).terms)
        assert len(twice.terms) == len(parse(q).terms)


# -- chart --------------------------------------------------------------------------
def _days(counts: list[int]) -> list[tuple[date, int]]:
    start = date(2026, 11, 1)
    return [(start + timedelta(days=i), n) for i, n in enumerate(counts)]


def test_bars_are_proportional_and_share_a_baseline() -> None:
    """Heights follow the counts against a rounded maximum; zero days have no bar."""
    c = chart.build(_days([0, 5, 10, 20]))
    heights = [b.height for b in c.bars]
    assert heights[0] == 0 and heights[3] == pytest.approx(2 * heights[2])
    assert heights[2] == pytest.approx(2 * heights[1])
    assert all(b.y + b.height == pytest.approx(c.baseline) for b in c.bars)
    assert c.total == 35 and [t.label for t in c.y_ticks] == ["0", "10", "20"]


def test_a_small_day_beside_a_huge_one_stays_visible() -> None:
    """A day with one event among a million still draws a sliver."""
    c = chart.build(_days([1, 1_000_000]))
    assert c.bars[0].height >= 1.5


def test_bars_fit_the_plot_and_do_not_overlap() -> None:
    """Thirty days fit inside the SVG width, left to right."""
    c = chart.build(_days(list(range(30))))
    xs = [(b.x, b.x + b.width) for b in c.bars]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(xs))
    assert xs[0][0] >= chart.LEFT and xs[-1][1] <= c.width
    assert 1 <= len(c.x_ticks) <= 8
