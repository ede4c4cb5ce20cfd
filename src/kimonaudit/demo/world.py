"""Who works at the demo helpdesks: the three tenants, their staff, API
clients, addresses and browsers.

Every name here is made up; every address is in the documentation ranges
(RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24); every domain
ends in .test (RFC 2606), so nothing points at a real person or host.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field

FIRST_NAMES = (
    "Ann Ben Chloé Dev Elena Farid Grace Hiro Ines Jamal Kai Lena Marco Nadia Omar Priya "
    "Quinn Rosa Sven Tara Uma Victor Wen Ximena Yusuf Zoë Aisha Bruno Carmen Dmitri Emeka "
    "Fatima Gustavo Hana Ivan Julia Kofi Leila Mateo Noor Oskar Paula Rahul Sofia Tomás Ulla "
    "Valeria William Yara Zane Amara Björn Camille Diego Esther Felix Gemma Hugo Irene José"
).split()
LAST_NAMES = (
    "Lee Okafor Martin Sharma Novak García Kim Rossi Haddad Murphy Schmidt Tanaka Silva "
    "Johansson Nguyen Kowalski Dubois Mensah Cohen Petrov Fernández Yilmaz Andersen Costa "
    "Ibrahim O'Brien Müller Chen Patel Moreau Bianchi Hughes Larsen Santos Ahmed Fischer "
    "Walsh Nakamura Reyes Brennan Lindqvist Adeyemi Horvat Park Duarte Kaur Volkov Bauer "
    "Quintero Sato Mbeki Jansen Ortiz Kelly Abbott Ueda"
).split()

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
)
MOBILE_APPS = ("KimonDesk-iOS/4.2.1 (iPhone; iOS 17.4)", "KimonDesk-Android/4.2.0 (Pixel 8)")
ATTACKER_AGENTS = ("python-requests/2.31.0", "curl/8.5.0", "Mozilla/5.0 (compatible; scanner)")

TICKET_GROUPS = ("Tier 1", "Tier 2", "Billing", "Escalations")
EXTRA_ROLES = ("team_lead", "light_agent", "billing_agent", "qa_reviewer")


@dataclass(frozen=True)
class ApiClient:
    id: str
    name: str
    user_agent: str
    ip: str
    weight: float


@dataclass(frozen=True)
class Profile:
    """One demo tenant: who they are and how busy."""

    key: str
    name: str
    plan: str
    domain: str
    share: float  # of the demo's events
    utc_offset_hours: int  # local working hours, no DST: close enough for a demo
    agents: int
    admins: int
    tickets_per_day: float
    sso: bool
    office_net: str  # the office's egress addresses, a /24 prefix
    api_clients: tuple[ApiClient, ...]
    # The ticket with this id is created 20 days before the end (the
    # README's "who viewed ticket 10482"); otherwise ids start at 1001.
    anchor_ticket: int | None = None


PROFILES: tuple[Profile, ...] = (
    Profile(
        key="acme",
        name="Acme Support",
        plan="enterprise",
        domain="acme-support.test",
        share=0.75,
        utc_offset_hours=-5,
        agents=42,
        admins=6,
        tickets_per_day=20,
        sso=True,
        office_net="192.0.2",
        api_clients=(
            ApiClient(
                "api_crm_sync", "CRM sync", "acme-crm-sync/3.2 (+python-httpx)", "198.51.100.201", 5
            ),
            ApiClient("api_status_bot", "Status page bot", "statusbot/1.9", "198.51.100.202", 2),
            ApiClient(
                "api_bi_export", "BI nightly export", "bi-loader/2024.3", "198.51.100.203", 1
            ),
            ApiClient(
                "api_chat_bridge",
                "Chat bridge",
                "chat-bridge/0.14 (Go-http-client/2.0)",
                "198.51.100.204",
                2,
            ),
        ),
        anchor_ticket=10482,
    ),
    Profile(
        key="globex",
        name="Globex Helpdesk",
        plan="team",
        domain="globex-helpdesk.test",
        share=0.20,
        utc_offset_hours=1,
        agents=11,
        admins=3,
        tickets_per_day=7,
        sso=False,
        office_net="192.0.2",
        api_clients=(
            ApiClient("api_shop_sync", "Web shop sync", "globex-shop/5.1", "198.51.100.211", 3),
            ApiClient(
                "api_reports", "Weekly reports", "python-requests/2.31.0", "198.51.100.212", 1
            ),
        ),
    ),
    Profile(
        key="initech",
        name="Initech IT",
        plan="free",
        domain="initech-it.test",
        share=0.05,
        utc_offset_hours=-8,
        agents=3,
        admins=1,
        tickets_per_day=2,
        sso=False,
        office_net="192.0.2",
        api_clients=(
            ApiClient("api_inventory", "Asset inventory", "tps-inventory/0.9", "198.51.100.221", 1),
        ),
    ),
)


@dataclass
class Person:
    """A member of a tenant's support team. Mutable: roles change and
    people join and leave during the simulation."""

    id: str
    name: str
    email: str
    roles: set[str]
    weight: float  # how busy, relative to colleagues
    ips: tuple[str, ...]  # office first, then home
    user_agent: str
    mfa: bool = False
    active_from: int = 0  # µs since the epoch
    active_to: int = 2**62
    last_ticket: int | None = None
    groups: set[str] = field(default_factory=set)

    @property
    def type(self) -> str:
        return "admin" if "admin" in self.roles else "agent"

    def actor(self) -> dict[str, str]:
        return {"id": self.id, "type": self.type, "name": self.name, "email": self.email}

    def active(self, us: int) -> bool:
        return self.active_from <= us < self.active_to


def email_local(first: str, last: str) -> str:
    """``Zoë O'Brien`` -> ``zoe.obrien``: the ASCII skeleton of the name."""
    text = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore").decode()
    return "".join(c for c in text.lower() if c.isalnum() or c == ".")


def make_person(rnd: random.Random, p: Profile, n: int, used: set[str], role: str) -> Person:
    """Staff member number `n` (`agent_<n>`, as the docs' `agent_42`)."""
    while True:
        first, last = rnd.choice(FIRST_NAMES), rnd.choice(LAST_NAMES)
        if f"{first} {last}" not in used:
            break
    used.add(f"{first} {last}")
    office = f"{p.office_net}.{rnd.randrange(10, 60)}"
    home = f"198.51.100.{rnd.randrange(1, 180)}"
    groups = {"helpdesk-admins"} if role == "admin" else {"helpdesk-agents"}
    return Person(
        id=f"agent_{n}",
        name=f"{first} {last}",
        email=f"{email_local(first, last)}@{p.domain}",
        roles={role},
        weight=rnd.lognormvariate(0, 0.45) * (0.35 if role == "admin" else 1.0),
        ips=(office, home),
        user_agent=rnd.choice(BROWSERS),
        mfa=role == "admin" or rnd.random() < 0.6,
        groups=groups,
    )


def make_staff(rnd: random.Random, p: Profile) -> list[Person]:
    used: set[str] = set()
    roles = ["admin"] * p.admins + ["agent"] * p.agents
    rnd.shuffle(roles)
    return [make_person(rnd, p, n, used, role) for n, role in enumerate(roles, start=1)]
