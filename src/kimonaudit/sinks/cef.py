"""ArcSight Common Event Format (CEF:0), one line per event.

Header: ``CEF:0|KimonDesk|KimonAudit|<version>|<signature id>|<name>|<severity>|``
where a header field escapes ``\\`` and ``|`` with a backslash (newlines,
not allowed there, become spaces). Extension values escape ``\\`` and
``=`` with a backslash, and CR and LF as ``\\r`` and ``\\n``; extension keys
are fixed names. Severity (0-10): info 1, low 3, medium 5, high 8,
critical 10; a checkpoint is 1. docs/streaming.md lists every key.
"""

from __future__ import annotations

import json

from kimonaudit.sinks.events import StreamEvent

VENDOR = "KimonDesk"
PRODUCT = "KimonAudit"
VERSION = "0.1.0"
SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}


def escape_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def escape_value(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def _compact(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def to_cef(ev: StreamEvent) -> str:
    """One CEF record (no trailing newline)."""
    d = ev.data
    ext: list[tuple[str, object]]
    if ev.is_checkpoint:
        sig, name, severity = "audit.checkpoint", "Signed checkpoint", 1
        ext = [
            ("rt", ev.time_us // 1000),
            ("cs1Label", "tenant"),
            ("cs1", ev.tenant_id),
            ("cn1Label", "treeSize"),
            ("cn1", d["tree_size"]),
            ("cs2Label", "root"),
            ("cs2", d["root"]),
            ("cs3Label", "origin"),
            ("cs3", d["origin"]),
            ("cs6Label", "note"),
            ("cs6", d["note"]),
        ]
    else:
        sig, severity = d["action"], SEVERITY[d["severity"]]
        name = d["action"].replace(".", " ").replace("_", " ")
        actor = d.get("actor") or {}
        target = d.get("target") or {}
        ext = [
            ("rt", ev.time_us // 1000),
            ("externalId", d["id"]),
            ("act", d["action"]),
            ("cat", d["category"]),
            ("outcome", d["outcome"]),
            ("suid", actor.get("hash")),
            ("cs1Label", "tenant"),
            ("cs1", ev.tenant_id),
            ("cn1Label", "seq"),
            ("cn1", ev.seq),
            ("cs2Label", "leafHash"),
            ("cs2", d["leaf_hash"]),
            ("cs3Label", "targetType"),
            ("cs3", target.get("type")),
            ("cs4Label", "targetId"),
            ("cs4", target.get("id")),
            ("cs5Label", "security"),
            ("cs5", "true" if d["security"] else "false"),
            ("src", d.get("ip")),
            ("requestClientApplication", d["context"].get("user_agent")),
            ("cs6Label", "changes"),
            ("cs6", _compact(d["changes"]) if d["changes"] else None),
        ]
    header = "|".join(
        ["CEF:0", *(escape_header(x) for x in (VENDOR, PRODUCT, VERSION, sig, name)), str(severity)]
    )
    body = " ".join(f"{k}={escape_value(str(v))}" for k, v in ext if v is not None and v != "")
    return f"{header}|{body}"
