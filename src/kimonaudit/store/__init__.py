"""Storage adapters: one narrow protocol, two implementations."""

from __future__ import annotations

from kimonaudit.errors import ConfigError
from kimonaudit.store.base import Store


def open_store(url: str, **options: object) -> Store:
    """Open the store a database URL names (``sqlite:///path`` or ``postgresql://``)."""
    if url.startswith("sqlite:"):
        from kimonaudit.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url), **options)  # type: ignore[arg-type]
    if url.startswith(("postgresql://", "postgres://")):
        from kimonaudit.store.postgres import PostgresStore

        return PostgresStore(url, **options)  # type: ignore[arg-type]
    raise ConfigError(
        f"unsupported database URL {url.split('://')[0]!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host:port/dbname"
    )


__all__ = ["Store", "open_store"]
