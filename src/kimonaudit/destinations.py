"""SIEM destinations of a tenant: create, list, show, change, pause,
resume, rotate the signing secret, delete; each change is an
``audit_stream.*`` entry in the tenant's own log.

Secrets are sealed under the deployment key at once; they are returned
only when generated here (the webhook signing secret), exactly once, and
never shown, logged or entered in the log afterwards.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kimonaudit.core.destination_records import DeliveryState, DestinationRecord
from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import InvalidInput, InvalidQuery, NotFound
from kimonaudit.sinks import config as dconfig
from kimonaudit.sinks import sealing, ssrf, webhooks

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog

SYSTEM_ACTOR: Mapping[str, str] = {"id": "kimonaudit-cli", "type": "system"}
DELIVERY_ACTOR: Mapping[str, str] = {"id": "kimonaudit-delivery", "type": "system"}
LAGGING_SECONDS = 60.0
# How long the previous webhook secret keeps signing after a rotation.
DEFAULT_ROTATION_OVERLAP_S = 24 * 3600


def _ts(us: int | None) -> str | None:
    return None if us is None else format_ts(us)


@dataclass(frozen=True)
class Health:
    status: str  # ok, idle, lagging, failing, paused, disabled
    tree_size: int
    next_seq: int
    lag_events: int
    lag_seconds: float
    delivery: DeliveryState

    def to_json(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "status": self.status,
            "next_seq": self.next_seq,
            "tree_size": self.tree_size,
            "lag_events": self.lag_events,
            "lag_seconds": round(self.lag_seconds, 3),
            "last_success_at": _ts(d.last_success_at),
            "last_error_at": _ts(d.last_error_at),
            "last_error": d.last_error,
            "delivered_events": d.delivered_events,
            "delivered_checkpoints": d.delivered_checkpoints,
            "delivered_batches": d.delivered_batches,
            "failed_attempts": d.failed_attempts,
            "retry_attempt": d.attempts,
            "next_attempt_at": _ts(d.next_attempt_at) if d.attempts else None,
            "checkpoint_size": d.cp_size,
        }


@dataclass(frozen=True)
class Destination:
    """A destination as users see it: settings and health, no secrets."""

    record: DestinationRecord
    config: Mapping[str, Any]
    health: Health

    @property
    def id(self) -> str:
        return self.record.destination_id

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "id": r.destination_id,
            "tenant_id": r.tenant_id,
            "name": r.name,
            "kind": r.kind,
            "format": r.format,
            "url": self.config["url"],
            "filter": self.config["filter"],
            "batch": self.config["batch"],
            "settings": {k: v for k, v in self.config["settings"].items() if k != "ca_pem"}
            | ({"ca_pem": "(set)"} if "ca_pem" in self.config["settings"] else {}),
            "state": r.state,
            "state_reason": r.state_reason,
            "created_at": format_ts(r.created_at),
            "updated_at": format_ts(r.updated_at),
            "health": self.health.to_json(),
        }


class Destinations:
    """The destinations of every tenant of one log."""

    def __init__(
        self,
        log: AuditLog,
        allowlist: Sequence[ssrf.IPNetwork] = (),
        resolve: ssrf.Resolver = ssrf.system_resolver,
    ) -> None:
        self.log = log
        self.store: Any = log.store
        self.allowlist = tuple(allowlist)
        self.resolve = resolve

    # -- helpers -----------------------------------------------------------
    def check_endpoint(self, kind: str, url: str) -> str:
        """The SSRF guard over a destination URL; the address to connect to."""
        ep = dconfig.parse_endpoint(kind, url)
        address = ssrf.check_host(ep.host, ep.port, self.allowlist, self.resolve)
        if not ep.secure and ssrf.refusal(ipaddress.ip_address(address)) is None:
            raise InvalidInput(
                f"use {'https' if kind != 'syslog' else 'tls'}: plain {ep.scheme} is only "
                "allowed to allow-listed addresses",
                field="url",
            )
        return address

    def _check_filter(self, tenant_id: str, query: str) -> None:
        """InvalidInput naming the `filter` field if `query` does not parse
        (the query parser names its own field `q`, the search parameter)."""
        if not query:
            return
        from kimonaudit.search import compile_query

        try:
            compile_query(self.log, tenant_id, query)
        except InvalidQuery as exc:
            raise InvalidInput(exc.reason, field="filter") from None

    def secrets(self, rec: DestinationRecord) -> dict[str, Any]:
        return sealing.unseal(
            self.log.keys.actor_secret, rec.tenant_id, rec.destination_id, rec.sealed
        )

    def _record(self, tenant_id: str, destination_id: str) -> DestinationRecord:
        rec: DestinationRecord | None = self.store.get_destination(tenant_id, destination_id)
        if rec is None:
            raise NotFound(f"no destination {destination_id!r} in tenant {tenant_id}")
        return rec

    def _entry(
        self,
        rec: DestinationRecord,
        verb: str,
        actor: Mapping[str, str] | None,
        extra: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> None:
        # DESIGN.md's catalogue has no audit_stream.updated, so it is a custom
        # action (security-relevant by its audit_* prefix) whose severity is
        # set here: a changed URL or secret redirects the tenant's log.
        severity = "high" if verb == "updated" else None
        cfg = json.loads(rec.config)
        event: dict[str, Any] = {
            "action": f"audit_stream.{verb}",
            "actor": dict(actor or SYSTEM_ACTOR),
            "target": {"type": "destination", "id": rec.destination_id},
            "metadata": {
                "name": rec.name,
                "kind": rec.kind,
                "format": rec.format,
                # The host only: a URL's path or query may carry a token.
                "host": urlsplit(cfg["url"]).hostname,
                "filter": cfg["filter"],
                **(extra or {}),
            },
        }
        if severity:
            event["severity"] = severity
        if event_id:
            event["id"] = event_id
        self.log.append(rec.tenant_id, [event])

    def view(self, rec: DestinationRecord) -> Destination:
        delivery = self.store.get_delivery(rec.tenant_id, rec.destination_id) or DeliveryState(
            rec.tenant_id, rec.destination_id
        )
        return Destination(rec, json.loads(rec.config), self.health(rec, delivery))

    def health(self, rec: DestinationRecord, d: DeliveryState) -> Health:
        size = self.store.tree_state(rec.tenant_id).size
        lag_events = max(0, size - d.next_seq)
        lag_seconds = 0.0
        if lag_events:
            oldest = self.store.get_entry(rec.tenant_id, d.next_seq)
            if oldest is not None:
                lag_seconds = max(0.0, (self.log.now_us() - oldest.recorded_at) / 1e6)
        if rec.state != "active":
            status = rec.state
        elif d.attempts:
            status = "failing"
        elif lag_seconds > LAGGING_SECONDS:
            status = "lagging"
        elif d.last_success_at is None and not lag_events:
            status = "idle"
        else:
            status = "ok"
        return Health(status, size, d.next_seq, lag_events, lag_seconds, d)

    # -- commands ----------------------------------------------------------
    def create(
        self,
        tenant_id: str,
        *,
        name: str,
        kind: str,
        format: str | None = None,
        url: str | None = None,
        settings: Mapping[str, Any] | None = None,
        secrets: Mapping[str, Any] | None = None,
        batch: Mapping[str, Any] | None = None,
        filter: str = "",
        start: str | int = "now",
        actor: Mapping[str, str] | None = None,
    ) -> tuple[Destination, dict[str, str]]:
        """Create a destination; returns it and the secrets generated for it
        (shown once). Delivery starts at the tenant's next entry (`start`
        "now", so the `audit_stream.created` entry is the first delivered),
        at seq 0 ("beginning") or at a given seq."""
        self.log.get_tenant(tenant_id)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInput("1 to 200 characters", field="name")
        cfg, sec, generated = dconfig.normalize(kind, format, url, settings, secrets, batch, filter)
        self._check_filter(tenant_id, cfg["filter"])
        self.check_endpoint(kind, cfg["url"])
        size = self.store.tree_state(tenant_id).size
        if start == "now":
            first = size
        elif start == "beginning":
            first = self.store.tree_state(tenant_id).purged
        elif isinstance(start, int) and not isinstance(start, bool) and 0 <= start <= size:
            first = start
        else:
            raise InvalidInput(f'"now", "beginning" or a seq from 0 to {size}', field="start")
        dest_id = "dst_" + _secrets.token_hex(8)
        now = self.log.now_us()
        rec = DestinationRecord(
            tenant_id,
            dest_id,
            name.strip(),
            kind,
            format or cfg_format(kind),
            json.dumps(cfg, sort_keys=True),
            sealing.seal(self.log.keys.actor_secret, tenant_id, dest_id, sec),
            "active",
            None,
            now,
            now,
        )
        latest = self.store.latest_checkpoint(tenant_id)
        cp_size = latest.size if latest is not None and first >= size else 0
        self.store.insert_destination(rec, DeliveryState(tenant_id, dest_id, first, cp_size))
        self._entry(rec, "created", actor)
        return self.view(rec), generated

    def list(self, tenant_id: str) -> list[Destination]:
        self.log.get_tenant(tenant_id)
        return [self.view(r) for r in self.store.list_destinations(tenant_id)]

    def get(self, tenant_id: str, destination_id: str) -> Destination:
        return self.view(self._record(tenant_id, destination_id))

    def pause(
        self,
        tenant_id: str,
        destination_id: str,
        reason: str = "paused by an administrator",
        actor: Mapping[str, str] | None = None,
    ) -> Destination:
        rec = self._record(tenant_id, destination_id)
        self.store.set_destination_state(
            tenant_id, destination_id, "paused", reason[:500], self.log.now_us()
        )
        self._entry(rec, "paused", actor, {"reason": reason[:500]})
        return self.get(tenant_id, destination_id)

    def resume(
        self, tenant_id: str, destination_id: str, actor: Mapping[str, str] | None = None
    ) -> Destination:
        """Active again (after a pause or a 410): the retry schedule restarts
        and delivery catches up from where it stopped."""
        rec = self._record(tenant_id, destination_id)
        self.store.set_destination_state(
            tenant_id, destination_id, "active", None, self.log.now_us()
        )
        self.store.retry_now(tenant_id, destination_id, reset_attempts=True)
        self._entry(rec, "resumed", actor)
        return self.get(tenant_id, destination_id)

    def delete(
        self, tenant_id: str, destination_id: str, actor: Mapping[str, str] | None = None
    ) -> None:
        rec = self._record(tenant_id, destination_id)
        self.store.delete_destination(tenant_id, destination_id)
        self._entry(rec, "deleted", actor)

    def update(
        self,
        tenant_id: str,
        destination_id: str,
        *,
        name: str | None = None,
        format: str | None = None,
        url: str | None = None,
        filter: str | None = None,
        batch: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        secrets: Mapping[str, Any] | None = None,
        new_signing_secret: bool = False,
        actor: Mapping[str, str] | None = None,
    ) -> tuple[Destination, builtins.list[str], dict[str, str]]:
        """Change a destination's settings; returns it, the names of the
        fields that changed, and any secret generated (shown once).

        Arguments left None keep their value. `batch` merges into the
        batching limits; `settings` and `secrets` merge key by key, a None
        value removing the key (a required secret cannot be removed). A new
        `url` goes through the SSRF guard again. Secrets given here replace
        the stored ones and are never returned; a webhook's signing secret
        given or generated (`new_signing_secret`) replaces every live one at
        once (`rotate_secret` keeps the old one signing for a while).

        The change applies from the next batch: a batch already saved for
        retry is sent again as it was formed (its format and filter). A
        change to the URL, settings or secrets makes a failing destination's
        next attempt due at once. An `audit_stream.updated` entry names the
        changed fields, never a secret's value."""
        rec = self._record(tenant_id, destination_id)
        cfg = json.loads(rec.config)
        changed: builtins.list[str] = []  # (`list` is a method of this class)
        if name is not None:
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise InvalidInput("1 to 200 characters", field="name")
            if name.strip() != rec.name:
                changed.append("name")
        new_fmt = rec.format if format is None else format
        if new_fmt != rec.format:
            changed.append("format")
        new_filter = cfg["filter"] if filter is None else filter
        if new_filter != cfg["filter"]:
            changed.append("filter")
        new_batch = {**cfg["batch"], **(batch or {})}
        changed += [f"batch.{k}" for k in sorted(new_batch) if new_batch[k] != cfg["batch"].get(k)]
        new_settings = dict(cfg["settings"])
        for key, value in (settings or {}).items():
            if value is None:
                new_settings.pop(key, None)
            else:
                new_settings[key] = value
        changed += [
            f"settings.{k}"
            for k in sorted(set(new_settings) | set(cfg["settings"]))
            if new_settings.get(k) != cfg["settings"].get(k)
        ]
        # The URL: as given, or, where it was derived from a setting that
        # changed (Datadog's site, S3's region), derived again.
        new_url = url
        if new_url is None and cfg["url"] != dconfig.default_url(rec.kind, cfg["settings"]):
            new_url = cfg["url"]
        sec = self.secrets(rec)
        generated: dict[str, str] = {}
        if rec.kind == "webhook":
            given = dict(secrets or {})
            unknown = set(given) - {"signing_secret"}
            if unknown:
                raise InvalidInput(f"unknown webhook secret {sorted(unknown)[0]!r}", "secrets")
            replacement = given.get("signing_secret")
            if "signing_secret" in given and replacement is None:
                raise InvalidInput("a webhook destination needs it", "secrets.signing_secret")
            if new_signing_secret:
                if replacement is not None:
                    raise InvalidInput(
                        "give a secret or ask for a new one, not both", "secrets.signing_secret"
                    )
                replacement = generated["signing_secret"] = webhooks.new_secret()
            live = live_signing_secrets(sec, self.log.now_us())
            check = {"signing_secret": replacement or (live[0] if live else webhooks.new_secret())}
        else:
            if new_signing_secret:
                raise InvalidInput("only webhook destinations have a signing secret", "kind")
            merged = dict(sec)
            for key, value in (secrets or {}).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            check = merged
        # Everything checked together as at creation (InvalidInput names the field).
        new_cfg, checked, _ = dconfig.normalize(
            rec.kind, new_fmt, new_url, new_settings, check, new_batch, new_filter
        )
        if new_cfg["url"] != cfg["url"]:
            changed.append("url")
        secret_changes: list[str] = []
        if rec.kind == "webhook":
            if replacement is not None:
                secret_changes.append("secrets.signing_secret")
                sec["signing_secrets"] = [{"secret": replacement, "expires_at": None}]
        else:
            keys = sorted(set(checked) | set(sec))
            secret_changes = [f"secrets.{k}" for k in keys if checked.get(k) != sec.get(k)]
            sec = checked
        changed += secret_changes
        if "filter" in changed:
            self._check_filter(tenant_id, new_cfg["filter"])
        if "url" in changed:
            self.check_endpoint(rec.kind, new_cfg["url"])
        if not changed:
            return self.view(rec), [], generated
        now = self.log.now_us()
        new_rec = replace(
            rec,
            name=rec.name if name is None else name.strip(),
            format=new_fmt,
            config=json.dumps(new_cfg, sort_keys=True),
            sealed=sealing.seal(self.log.keys.actor_secret, tenant_id, destination_id, sec)
            if secret_changes
            else rec.sealed,
            updated_at=now,
        )
        self.store.update_destination_config(new_rec)
        if any(c == "url" or c.startswith(("settings.", "secrets.")) for c in changed):
            # What failed may be fixed now: try again at once (the attempt
            # count toward pausing is kept).
            self.store.retry_now(tenant_id, destination_id, reset_attempts=False)
        previous = {
            k: v
            for k, v in (
                ("name", rec.name),
                ("format", rec.format),
                ("filter", cfg["filter"]),
                ("host", urlsplit(cfg["url"]).hostname),
            )
            if k in changed or (k == "host" and "url" in changed)
        }
        self._entry(new_rec, "updated", actor, {"changed": changed, "previous": previous})
        return self.view(new_rec), changed, generated

    def rotate_secret(
        self,
        tenant_id: str,
        destination_id: str,
        overlap_s: int = DEFAULT_ROTATION_OVERLAP_S,
        actor: Mapping[str, str] | None = None,
    ) -> str:
        """A new webhook signing secret (returned once). The previous one
        keeps signing beside it for `overlap_s` seconds."""
        rec = self._record(tenant_id, destination_id)
        if rec.kind != "webhook":
            raise InvalidInput("only webhook destinations have a signing secret", field="kind")
        if not 0 <= overlap_s <= 30 * 86400:
            raise InvalidInput("0 to 2592000 seconds", field="overlap_seconds")
        sec = self.secrets(rec)
        now = self.log.now_us()
        new = webhooks.new_secret()
        live = [
            s for s in sec["signing_secrets"] if s["expires_at"] is None or s["expires_at"] > now
        ]
        keep = [
            {"secret": s["secret"], "expires_at": now + overlap_s * 1_000_000} for s in live[:1]
        ]
        sec["signing_secrets"] = [{"secret": new, "expires_at": None}, *keep]
        sealed = sealing.seal(self.log.keys.actor_secret, tenant_id, destination_id, sec)
        self.store.update_destination_config(replace(rec, sealed=sealed, updated_at=now))
        self._entry(rec, "updated", actor, {"change": "signing secret rotated",
                                             "changed": ["secrets.signing_secret"]})  # fmt: skip
        return new


def cfg_format(kind: str) -> str:
    from kimonaudit.core.destination_records import KIND_FORMATS

    return KIND_FORMATS[kind][0]


def live_signing_secrets(sec: Mapping[str, Any], now_us: int) -> list[str]:
    """The webhook secrets to sign with now, newest first."""
    return [
        s["secret"]
        for s in sec.get("signing_secrets", [])
        if s["expires_at"] is None or s["expires_at"] > now_us
    ]
