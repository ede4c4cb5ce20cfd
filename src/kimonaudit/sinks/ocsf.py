"""OCSF 1.5.0: each catalogue action mapped to the class and activity that
fit it (docs/streaming.md has the table; `MAPPING` is its source).

Every event carries the base attributes (class, category, activity, type,
time in epoch milliseconds, severity, status), `metadata` (product, schema
version, the event id as `uid`, seq as `sequence`, the tenant), the actor
as its keyed hash, the source IP, and the class's own required object
(`user`, `entity`, `group`, `privileges`, `api`, `web_resources`). What has
no OCSF attribute (category, security flag, leaf hash, changes, context,
metadata) goes to `unmapped.kimonaudit`. Custom actions are mapped by their
last segment's verb to Web Resources Activity.
"""

from __future__ import annotations

from typing import Any

from kimonaudit.core.catalogue import Severity
from kimonaudit.sinks.events import StreamEvent

VERSION = "1.5.0"
PRODUCT = {"name": "KimonAudit", "vendor_name": "KimonDesk", "version": "0.1.0"}

_IAM = (3, "Identity & Access Management")
_APP = (6, "Application Activity")
_SYS = (1, "System Activity")

# class uid -> (name, category, {activity id: name})
CLASSES: dict[int, tuple[str, tuple[int, str], dict[int, str]]] = {
    3001: (
        "Account Change",
        _IAM,
        {1: "Create", 3: "Password Change", 5: "Disable", 6: "Delete", 10: "MFA Factor Enable",
         11: "MFA Factor Disable", 99: "Other"},
    ),
    3002: ("Authentication", _IAM, {1: "Logon", 2: "Logoff", 99: "Other"}),
    3004: (
        "Entity Management",
        _IAM,
        {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 9: "Disable", 12: "Suspend",
         13: "Resume", 99: "Other"},
    ),
    3005: ("User Access Management", _IAM, {1: "Assign Privileges", 2: "Revoke Privileges"}),
    3006: ("Group Management", _IAM, {3: "Add User", 4: "Remove User", 99: "Other"}),
    6001: (
        "Web Resources Activity",
        _APP,
        {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Search", 6: "Import",
         7: "Export", 8: "Share", 99: "Other"},
    ),
    6003: ("API Activity", _APP, {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}),
    1008: ("Event Log Activity", _SYS, {2: "Delete", 3: "Export", 99: "Other"}),
}  # fmt: skip

# action -> (class uid, activity id)
MAPPING: dict[str, tuple[int, int]] = {
    "auth.login.succeeded": (3002, 1),
    "auth.login.failed": (3002, 1),
    "auth.logout": (3002, 2),
    "auth.password.changed": (3001, 3),
    "auth.mfa.enabled": (3001, 10),
    "auth.mfa.disabled": (3001, 11),
    "auth.api_token.created": (3004, 1),
    "auth.api_token.revoked": (3004, 9),
    "user.created": (3001, 1),
    "user.deleted": (3001, 6),
    "user.suspended": (3001, 5),
    "role.assigned": (3005, 1),
    "role.revoked": (3005, 2),
    "role.created": (3004, 1),
    "role.updated": (3004, 3),
    "role.deleted": (3004, 4),
    "permission.updated": (3004, 3),
    "authz.denied": (6003, 99),
    "sso.config.updated": (3004, 3),
    "sso.group.member_added": (3006, 3),
    "sso.group.member_removed": (3006, 4),
    "sso.group_mapping.updated": (3004, 3),
    "ticket.viewed": (6001, 2),
    "ticket.created": (6001, 1),
    "ticket.field_changed": (6001, 3),
    "ticket.merged": (6001, 3),
    "ticket.deleted": (6001, 4),
    "tag.deleted": (6001, 4),
    "macro.applied": (6001, 3),
    "macro.created": (3004, 1),
    "macro.updated": (3004, 3),
    "macro.deleted": (3004, 4),
    "export.requested": (6001, 7),
    "export.downloaded": (6001, 7),
    "api.request": (6003, 99),
    "workflow.created": (3004, 1),
    "workflow.updated": (3004, 3),
    "workflow.deleted": (3004, 4),
    "audit_log.viewed": (6001, 2),
    "audit_log.searched": (6001, 5),
    "audit_log.exported": (1008, 3),
    "audit_log.purged": (1008, 2),
    "audit_log.redacted": (1008, 2),
    "actor.erased": (3001, 6),
    "audit.retention.changed": (3004, 3),
    "audit_stream.created": (3004, 1),
    "audit_stream.updated": (3004, 3),
    "audit_stream.paused": (3004, 12),
    "audit_stream.resumed": (3004, 13),
    "audit_stream.deleted": (3004, 4),
    "support.impersonation.started": (3002, 1),
    "support.impersonation.ended": (3002, 2),
}
CHECKPOINT_MAPPING = (1008, 99)

# A custom action's last segment -> Web Resources Activity id.
_VERBS = {
    "created": 1, "viewed": 2, "read": 2, "updated": 3, "changed": 3, "deleted": 4,
    "searched": 5, "imported": 6, "exported": 7, "shared": 8,
}  # fmt: skip
# api.request: the HTTP method (metadata.method or context.method) -> API Activity id.
_METHODS = {"POST": 1, "GET": 2, "HEAD": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}
_SEVERITY_IDS = {s.label: int(s) + 1 for s in Severity}  # info=1 ... critical=5
_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "denied": (2, "Failure"),
           "error": (2, "Failure")}  # fmt: skip


def class_of(action: str) -> tuple[int, int]:
    """(class uid, activity id) for `action` (custom actions included)."""
    found = MAPPING.get(action)
    if found is not None:
        return found
    return 6001, _VERBS.get(action.rsplit(".", 1)[-1], 99)


def to_ocsf(ev: StreamEvent) -> dict[str, Any]:
    """The OCSF object for one stream event."""
    d = ev.data
    if ev.is_checkpoint:
        class_uid, activity_id = CHECKPOINT_MAPPING
        out = _base(class_uid, activity_id, ev.time_us, 1, (1, "Success"))
        out["activity_name"] = "Checkpoint"
        out["message"] = f"Signed checkpoint of tree size {d['tree_size']}"
        out["metadata"].update(uid=f"{d['origin']}@{d['tree_size']}", tenant_uid=ev.tenant_id)
        out["unmapped"] = {"kimonaudit": {"type": ev.type, **d}}
        return out
    action = d["action"]
    class_uid, activity_id = class_of(action)
    if action == "api.request":
        method = str(d["metadata"].get("method") or d["context"].get("method") or "").upper()
        activity_id = _METHODS.get(method, 99)
    status = _STATUS.get(d["outcome"], (0, "Unknown"))
    out = _base(class_uid, activity_id, ev.time_us, _SEVERITY_IDS[d["severity"]], status)
    out["status_detail"] = d["outcome"]
    out["message"] = action
    out["metadata"].update(
        uid=d["id"], sequence=ev.seq, tenant_uid=ev.tenant_id, event_code=action, log_name="audit"
    )
    actor = d.get("actor")
    actor_user = {"uid": actor["hash"], "type": actor["type"]} if actor else {}
    if actor_user:
        out["actor"] = {"user": actor_user}
    endpoint: dict[str, Any] = {}
    if d.get("ip"):
        endpoint["ip"] = d["ip"]
    if d["context"].get("user_agent"):
        out["http_request"] = {"user_agent": str(d["context"]["user_agent"])}
    target = d.get("target") or {}
    target_obj = {k: v for k, v in (("uid", target.get("id")), ("type", target.get("type"))) if v}
    if class_uid in (3001, 3002, 3005):
        # The account acted on: the target user if there is one, else the actor.
        out["user"] = target_obj if target.get("type") == "user" else dict(actor_user)
        if class_uid == 3005:
            out["privileges"] = [str(d["metadata"].get("role") or target.get("id") or "role")]
        if class_uid == 3002:
            out["src_endpoint"] = endpoint
    elif class_uid == 3004:
        out["entity"] = {"name": target.get("id") or action.rsplit(".", 1)[0], **target_obj}
    elif class_uid == 3006:
        out["group"] = {"name": target.get("id") or "group", **target_obj}
        member = d["metadata"].get("user")
        if member:
            out["user"] = {"uid": str(member)}
    elif class_uid == 6003:
        out["api"] = {"operation": str(d["metadata"].get("path") or action)}
        out["src_endpoint"] = endpoint
        if not actor_user:
            out["actor"] = {}
    elif class_uid == 6001:
        out["web_resources"] = [target_obj or {"type": action.split(".", 1)[0]}]
        if endpoint:
            out["src_endpoint"] = endpoint
    elif class_uid == 1008:
        out["log_name"] = "kimonaudit"
    out["unmapped"] = {
        "kimonaudit": {
            "action": action,
            "category": d["category"],
            "security": d["security"],
            "seq": ev.seq,
            "leaf_hash": d["leaf_hash"],
            "target": d.get("target"),
            "changes": d["changes"],
            "context": d["context"],
            "metadata": d["metadata"],
            "occurred_at": d.get("occurred_at"),
            "redacted": d["redacted"],
        }
    }
    return out


def _base(
    class_uid: int, activity_id: int, time_us: int, severity_id: int, status: tuple[int, str]
) -> dict[str, Any]:
    name, (category_uid, category_name), activities = CLASSES[class_uid]
    return {
        "class_uid": class_uid,
        "class_name": name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activities.get(activity_id, "Other"),
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{name}: {activities.get(activity_id, 'Other')}",
        "time": time_us // 1000,
        "severity_id": severity_id,
        "severity": _SEVERITY_NAMES[severity_id],
        "status_id": status[0],
        "status": status[1],
        "metadata": {"version": VERSION, "product": dict(PRODUCT)},
    }


_SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High",
                   5: "Critical"}  # fmt: skip


def mapping_markdown() -> str:
    """The mapping as the Markdown table in docs/streaming.md."""
    lines = ["| action | OCSF class | class_uid | activity | type_uid |", "|---|---|---|---|---|"]
    rows = [*MAPPING.items(), ("audit.checkpoint", CHECKPOINT_MAPPING)]
    for action, (class_uid, activity_id) in rows:
        name, _, activities = CLASSES[class_uid]
        lines.append(
            f"| `{action}` | {name} | {class_uid} | {activities[activity_id]} ({activity_id}) "
            f"| {class_uid * 100 + activity_id} |"
        )
    return "\n".join(lines) + "\n"
