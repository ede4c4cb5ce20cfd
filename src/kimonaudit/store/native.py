"""The optional C extension (src/kimonaudit/_native.c, built by setup.py
where a compiler and the SQLite and OpenSSL headers are present): both
stores' `scan_ledger`. None when it was not built; verify then checks every
row in Python, with the same results."""

from __future__ import annotations

from types import ModuleType

native: ModuleType | None
try:
    from kimonaudit import _native as native
except ImportError:
    native = None
