"""Settings, declared once: name, environment variable, default, help.

Read at the edges (CLI, `kimonaudit.open`) and passed in explicitly; the
core never reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str
    secret: bool = False

    def get(self, explicit: str | None = None) -> str:
        if explicit is not None:
            return explicit
        return os.environ.get(self.env) or self.default


DATABASE_URL = Setting(
    "db",
    "KIMONAUDIT_DATABASE_URL",
    "sqlite:///kimonaudit.db",
    "Database URL: sqlite:///path/file.db or postgresql://user@host:5432/dbname.",
)
KEY_FILE = Setting(
    "key-file",
    "KIMONAUDIT_SIGNING_KEY_FILE",
    "kimonaudit.key",
    "Deployment key file (Ed25519 signing keys and the actor-hash secret); "
    "created with mode 0600 on first use.",
    secret=True,
)
DEPLOYMENT_NAME = Setting(
    "name",
    "KIMONAUDIT_DEPLOYMENT_NAME",
    "kimonaudit.local",
    "Deployment name: the signed-note key name and the checkpoint origin prefix "
    "(<name>/tenants/<tenant id>). Used when a key file is created.",
)

INDEXER = Setting(
    "indexer",
    "KIMONAUDIT_INDEXER",
    "process",
    "Where the search indexer runs (SQLite and PostgreSQL): process (a child "
    "process, so it uses the second core) or thread (in-process; what the tests use).",
)

ALL: tuple[Setting, ...] = (DATABASE_URL, KEY_FILE, DEPLOYMENT_NAME)
