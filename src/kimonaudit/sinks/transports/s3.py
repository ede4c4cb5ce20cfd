"""S3-compatible archives.

Each batch becomes one gzip NDJSON object (one rendered event per line,
checkpoints included) under a deterministic key::

    <prefix>tenant=<tenant>/dt=YYYY-MM-DD/hour=HH/<first seq>-<last seq>.json.gz

(date and hour of the first entry's recorded_at, UTC; seqs zero-padded to
20 digits so keys sort), and beside it ``….manifest.json``:
``{"object", "tenant_id", "first_seq", "last_seq", "entries", "sha256"
(of the object bytes), "checkpoint": <the first checkpoint covering every
entry of the object: origin, tree_size, root, note>}``. A retry writes the
same keys; an object already there with the same SHA-256 is left alone, so
nothing is duplicated. Path-style addressing, so any S3-compatible server
works (MinIO, Ceph, moto). The connection goes to the address the SSRF
guard checked (TLS verified for the endpoint's name, against the system
CAs or the `ca_pem` setting).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from kimonaudit.sinks.transports.base import Batch, Outcome, PinnedHttp, Target, transport_error


def object_key(prefix: str, tenant_id: str, first_time_us: int, first: int, last: int) -> str:
    t = datetime.fromtimestamp(first_time_us / 1_000_000, UTC)
    return (
        f"{prefix}tenant={tenant_id}/dt={t:%Y-%m-%d}/hour={t:%H}/{first:020d}-{last:020d}.json.gz"
    )


def ndjson_gz(batch: Batch) -> bytes:
    lines = list(batch.rendered)
    # mtime=0: the same batch gives the same bytes on every attempt.
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


class _Raw:
    """The body of a response as botocore reads it (`stream()`)."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.content


class S3Transport:
    """boto3 forms and signs the requests (SigV4, path-style); they are sent
    by `PinnedHttp`, to the address the SSRF guard checked, through
    botocore's documented ``before-send`` hook. botocore's own HTTP stack
    (urllib3) would resolve the endpoint's name again at connect time, and
    a DNS answer changed since the check (rebinding) would be obeyed; here
    the name is only the Host header, the SNI and the certificate name."""

    def __init__(self, target: Target, secrets: dict[str, Any], timeout: float) -> None:
        import boto3
        from botocore.config import Config

        self.target = target
        s = target.settings
        self.bucket = s["bucket"]
        self.prefix = s.get("prefix") or ""
        self.http = PinnedHttp(target, timeout)
        self.client = boto3.client(
            "s3",
            endpoint_url=target.url,
            region_name=s.get("region") or "us-east-1",
            aws_access_key_id=secrets["access_key_id"],
            aws_secret_access_key=secrets["secret_access_key"],
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},
                # A plain Content-Length body (no aws-chunked trailers), which
                # every S3-compatible server takes.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self.client.meta.events.register("before-send.s3", self._send_pinned)

    def _send_pinned(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        elif isinstance(body, str):
            body = body.encode()
        # Hop-by-hop headers are the client's business (none of them is signed).
        headers = {
            k: v.decode() if isinstance(v, bytes) else v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "expect", "transfer-encoding", "connection")
        }
        resp = self.http.request(request.method, request.url, body or None, headers)
        return AWSResponse(request.url, resp.status_code, dict(resp.headers), _Raw(resp.content))

    def send(self, batch: Batch) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        entries = [e for e in batch.events if not e.is_checkpoint]
        first_time = entries[0].time_us if entries else batch.events[0].time_us
        key = object_key(self.prefix, self.target.tenant_id, first_time, batch.first, batch.last)
        body = ndjson_gz(batch)
        digest = hashlib.sha256(body).hexdigest()
        cp = batch.covering
        manifest = {
            "object": key,
            "tenant_id": self.target.tenant_id,
            "first_seq": batch.first,
            "last_seq": batch.last,
            "entries": len(entries),
            "sha256": digest,
            "checkpoint": None if cp is None else {
                "origin": cp.origin, "tree_size": cp.size,
                "root": base64.b64encode(cp.root).decode(), "note": cp.note,
            },
        }  # fmt: skip
        try:
            if not self._same(key, digest):
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson",
                    ContentEncoding="gzip", Metadata={"sha256": digest},
                )  # fmt: skip
            self.client.put_object(
                Bucket=self.bucket, Key=key.removesuffix(".json.gz") + ".manifest.json",
                Body=json.dumps(manifest, indent=1).encode(), ContentType="application/json",
            )  # fmt: skip
        except (BotoCoreError, ClientError, httpx.HTTPError) as exc:
            return transport_error(exc)
        return Outcome(True)

    def _same(self, key: str, digest: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return bool(head.get("Metadata", {}).get("sha256") == digest)

    def close(self) -> None:
        self.client.close()
        self.http.close()
