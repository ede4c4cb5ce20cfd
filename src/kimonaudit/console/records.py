"""The console's stored types, re-exported: they live in
`kimonaudit.core.console_records`, below the stores that keep them."""

from __future__ import annotations

from kimonaudit.core.console_records import (
    RANK,
    ROLES,
    ConsoleSession,
    ConsoleUser,
    SavedSearch,
)

__all__ = ["RANK", "ROLES", "ConsoleSession", "ConsoleUser", "SavedSearch"]
