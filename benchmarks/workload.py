"""A deterministic stream of realistic helpdesk events for benchmarks.

The mix follows what a helpdesk's audit log holds: ticket views dominate,
then field changes, API calls, macros, logins, with a thin tail of exports,
workflow edits and role, permission and SSO changes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

MIX: list[tuple[str, int]] = [
    ("ticket.viewed", 52),
    ("ticket.field_changed", 18),
    ("api.request", 12),
    ("macro.applied", 6),
    ("auth.login.succeeded", 5),
    ("auth.login.failed", 2),
    ("ticket.created", 2),
    ("export.requested", 1),
    ("workflow.updated", 1),
    ("role.assigned", 1),
]
FIELDS = [
    ("status", ["new", "open", "pending", "solved"]),
    ("priority", ["low", "normal", "high"]),
    ("assignee", ["agent_1", "agent_2", "agent_3"]),
    ("group", ["tier1", "tier2", "billing"]),
]
AGENTS = 400


def events(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    actions = [a for a, _ in MIX]
    weights = [w for _, w in MIX]
    for i in range(n):
        action = rnd.choices(actions, weights)[0]
        agent = rnd.randrange(AGENTS)
        ev: dict[str, Any] = {
            "action": action,
            "actor": {
                "id": f"agent_{agent}",
                "type": "agent",
                "name": f"Agent {agent}",
                "email": f"agent{agent}@acme.test",
            },
            "context": {
                "ip": f"198.51.100.{agent % 250}",
                "user_agent": "Mozilla/5.0 (X11)",
                "request_id": f"req-{i:09d}",
            },
            "metadata": {"via": rnd.choice(("web", "api", "mobile"))},
        }
        if action.startswith("ticket."):
            ev["target"] = {"type": "ticket", "id": str(10_000 + rnd.randrange(200_000))}
        if action == "ticket.field_changed":
            field, values = rnd.choice(FIELDS)
            ev["changes"] = [{"field": field, "from": rnd.choice(values), "to": rnd.choice(values)}]
        elif action == "api.request":
            ev["metadata"] = {
                "method": "GET",
                "route": "/api/v2/tickets/{id}",
                "status": 200,
                "duration_ms": rnd.randrange(2, 300),
            }
        elif action == "role.assigned":
            ev["target"] = {"type": "user", "id": f"user_{rnd.randrange(5000)}"}
            ev["changes"] = [{"field": "role", "from": "agent", "to": "admin"}]
        elif action == "macro.applied":
            ev["target"] = {"type": "ticket", "id": str(10_000 + rnd.randrange(200_000))}
            ev["metadata"] = {"macro_id": f"m{rnd.randrange(60)}"}
        yield ev
