"""The layers (adapters -> service -> core + store) as the import graph
shows them, and the light client: `import kimonaudit.client` loads no
server module, and works where only the client's own dependency is
installed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.servers import IngestServer

SRC = Path(__file__).resolve().parent.parent / "src" / "kimonaudit"

# What a light install (`pip install kimonaudit`) does not have, and what
# importing the client must not load.
SERVER_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "psycopg_pool",
    "cryptography",
    "jinja2",
    "lark",
    "argon2",
    "pydantic",
    "multipart",
    "prometheus_client",
)
SERVER_MODULES = (
    "kimonaudit.service",
    "kimonaudit.store",
    "kimonaudit.api",
    "kimonaudit.console",
    "kimonaudit.search",
    "kimonaudit.export",
    "kimonaudit.keys",
    "kimonaudit.cli",
    "kimonaudit.verifier",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the kimonaudit modules it imports anywhere (top level,
    inside functions, under TYPE_CHECKING alike)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = {f"{node.module}.{a.name}" for a in node.names} & mods.keys()
                # `from kimonaudit import x` imports the module x, not the package.
                out.update(subs or {node.module})
        graph[name] = {m for m in out if m in mods and m != name}
    return graph


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return False


def test_stores_import_nothing_above_them() -> None:
    """A store imports neither the console, the API, the service nor the CLI."""
    above = ("kimonaudit.console", "kimonaudit.api", "kimonaudit.service", "kimonaudit.cli")
    graph = _graph()
    bad = {
        (m, i)
        for m, imports in graph.items()
        if m.startswith("kimonaudit.store")
        for i in imports
        if _within(i, above)
    }
    assert not bad


def test_no_import_circle_between_service_search_and_export() -> None:
    """service imports search and export; they never import it back."""
    graph = _graph()
    assert {"kimonaudit.search", "kimonaudit.export"} <= graph["kimonaudit.service"]
    for low in ("kimonaudit.search", "kimonaudit.export", "kimonaudit.ports"):
        assert not _reaches(graph, low, "kimonaudit.service"), low


def test_core_imports_no_adapter_or_store() -> None:
    """The core imports only the core and the error tree."""
    graph = _graph()
    for m, imports in graph.items():
        if m.startswith("kimonaudit.core"):
            assert all(
                i.startswith("kimonaudit.core") or i == "kimonaudit.errors" for i in imports
            ), m


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_client_loads_no_server_module() -> None:
    """`import kimonaudit.client` (and the integrations) loads neither the
    service, the stores, the API nor any server-only package."""
    out = _python(
        "import json, sys\n"
        "import kimonaudit.client, kimonaudit.integrations.helpdesk\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(out)
    server = [
        m
        for m in loaded
        if m.split(".")[0] in SERVER_PACKAGES
        or m in ("sqlite3", "_sqlite3")
        or _within(m, SERVER_MODULES)
    ]
    assert server == []


# Run in a child where the server's packages cannot be imported at all, as
# after `pip install kimonaudit` without the [server] extra.
LIGHT_CHILD = """
import importlib.abc, json, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from kimonaudit.client import AuditClient
with AuditClient(sys.argv[2], sys.argv[3]) as audit:
    event_id = audit.record({"action": "ticket.viewed", "actor": {"id": "agent_42"}})
    assert audit.flush(timeout=30), "not delivered"
print(event_id)
"""


def test_light_client_delivers_without_server_packages(tmp_path: Path) -> None:
    """With the server's packages unimportable, the client still records
    and delivers an event to a real server."""
    with IngestServer(tmp_path) as srv:
        blocked = ",".join(SERVER_PACKAGES)
        done = subprocess.run(
            [sys.executable, "-c", LIGHT_CHILD, blocked, srv.url, srv.api_key],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        event_id = done.stdout.strip()
        assert [r.event_id for r in srv.entries({event_id})] == [event_id]


def test_command_without_server_install_says_what_to_install() -> None:
    """`kimonaudit` with the server's packages missing names the extra."""
    code = LIGHT_CHILD.split("from kimonaudit.client")[0] + (
        "sys.argv = ['kimonaudit', '--help']\nfrom kimonaudit.__main__ import main\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "click,fastapi,cryptography"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "pip install 'kimonaudit[server]'" in done.stderr
