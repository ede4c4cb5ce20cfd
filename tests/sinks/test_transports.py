"""Each transport against a real receiver on loopback: syslog over TCP and
TLS to Debian's rsyslog, a Splunk HEC endpoint, the Datadog logs intake,
and S3 (moto in server mode) through boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pycef
import pytest

import kimonaudit
from kimonaudit.destinations import Destinations
from kimonaudit.service import AuditLog
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import Deliverer
from tests.helpers import event
from tests.sinks.receivers import deliver_until
from tests.sinks.rsyslog import Rsyslog
from tests.sinks.test_syslog_format import HEADER, parse_sd

LOOPBACK = ssrf.parse_allowlist("127.0.0.0/8")


@pytest.fixture
def log(tmp_path: Path, key_file: str) -> Iterator[AuditLog]:
    lg = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=key_file)
    yield lg
    lg.close()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_syslog_to_rsyslog(log: AuditLog, tmp_path: Path, tls: bool) -> None:
    """rsyslog receives one RFC 5424 message per entry and checkpoint, in
    order, parses PRI, MSGID and structured data, and stores CEF intact."""
    with Rsyslog(tmp_path, tls=tls) as rs:
        tid = log.create_tenant("acme").id
        dests = Destinations(log, LOOPBACK)
        scheme = "tls" if tls else "tcp"
        host = "localhost" if tls else "127.0.0.1"
        settings = {"ca_pem": rs.pki["ca"]} if tls else {}
        dests.create(tid, name="rs", kind="syslog", format="cef",
                     url=f"{scheme}://{host}:{rs.port}", settings=settings,
                     batch={"max_wait_ms": 0, "max_events": 10})  # fmt: skip
        log.append(tid, [event(i) for i in range(25)])
        hostile = dict(event(99), changes=[{"field": "s", "from": 'a]b"c', "to": "é\\|="}])
        log.append(tid, [hostile])
        cp = log.checkpoint(tid)
        deliver_until(dests, lambda: len(rs.records()) >= cp.size + 1)
        recs = rs.records()
        seqs = []
        for r in recs:
            raw = r["raw"].encode()
            m = HEADER.match(raw)
            assert m, r["raw"]
            sd, msg = parse_sd(raw[m.end() :].decode())
            assert sd[0][0] == "kimonaudit@32473" and r["sd"].startswith("[kimonaudit@32473")
            assert r["msgid"] == m.group(6).decode()
            parsed = pycef.parse(msg)
            assert parsed is not None and parsed["DeviceVendor"] == "KimonDesk"
            if sd[0][1]["type"] == "audit.event":
                seqs.append(int(sd[0][1]["seq"]))
                assert parsed["DeviceEventClassID"] == r["msgid"]
        assert seqs == list(range(cp.size))
        assert recs[-1]["msgid"] == "audit.checkpoint"
        last = recs[-2]["msg"]
        assert "a]b" in last and "\\\\|\\=" in last  # CEF escapes survived rsyslog


def test_syslog_tls_refuses_an_unknown_ca(log: AuditLog, tmp_path: Path) -> None:
    """Without the receiver's CA the TLS handshake fails and is retried."""
    with Rsyslog(tmp_path, tls=True) as rs:
        tid = log.create_tenant("acme").id
        dests = Destinations(log, LOOPBACK)
        dest, _ = dests.create(tid, name="rs", kind="syslog", url=f"tls://localhost:{rs.port}",
                               batch={"max_wait_ms": 0})  # fmt: skip
        d = Deliverer(dests, schedule=(5,), lease_s=10, timeout_s=3)
        try:
            d.run_once()
        finally:
            d.close()
        h = dests.get(tid, dest.id).health
        assert h.status == "failing" and "CERTIFICATE_VERIFY_FAILED" in h.delivery.last_error
        assert rs.records() == []


def _seqs_of(items, key=lambda x: x) -> list[int]:
    return [key(i)["seq"] for i in items if key(i)["type"] == "audit.event"]


@pytest.mark.parametrize("ack", [False, True], ids=["plain", "ack"])
def test_splunk_hec(log: AuditLog, ack: bool) -> None:
    """Stacked events with time/host/source/sourcetype/index/fields reach
    the HEC endpoint in order; with ack, the channel header is sent and
    /services/collector/ack confirms; a busy server is retried."""
    from tests.sinks.http_receivers import HecReceiver

    with HecReceiver("hec-token-1") as hec:
        hec.busy = 1
        tid = log.create_tenant("acme").id
        dests = Destinations(log, LOOPBACK)
        dests.create(tid, name="splunk", kind="splunk_hec", format="ocsf", url=hec.url,
                     settings={"index": "audit", "ack": ack, "sourcetype": "ocsf:audit"},
                     secrets={"token": "hec-token-1"},
                     batch={"max_wait_ms": 0, "max_events": 8})  # fmt: skip
        log.append(tid, [event(i) for i in range(20)])
        cp = log.checkpoint(tid)
        deliver_until(
            dests, lambda: any(e["fields"]["type"] == "audit.checkpoint" for e in hec.events)
        )
        evs = hec.events
        assert _seqs_of(evs, lambda e: e["fields"]) == list(range(cp.size))
        first = evs[0]
        assert first["index"] == "audit" and first["sourcetype"] == "ocsf:audit"
        assert first["event"]["class_uid"] == 3004  # audit_stream.created: Entity Management
        assert isinstance(first["time"], float) and round(first["time"], 3) == first["time"]
        assert (len(hec.acks) == 1) == ack


def test_splunk_hec_bad_token_pauses_at_once(log: AuditLog) -> None:
    """HEC code 4 (invalid token) cannot be fixed by retrying: paused with the reason."""
    from tests.sinks.http_receivers import HecReceiver

    with HecReceiver("right") as hec:
        tid = log.create_tenant("acme").id
        dests = Destinations(log, LOOPBACK)
        dest, _ = dests.create(tid, name="s", kind="splunk_hec", url=hec.url,
                               secrets={"token": "wrong"}, batch={"max_wait_ms": 0})  # fmt: skip
        d = Deliverer(dests, schedule=(0.01,) * 5, lease_s=10, timeout_s=3)
        try:
            d.run_once()
        finally:
            d.close()
        got = dests.get(tid, dest.id)
        assert got.record.state == "paused" and "HEC code 4" in got.record.state_reason
        assert hec.events == []


def test_datadog_intake(log: AuditLog) -> None:
    """gzip JSON arrays with DD-API-KEY, ddsource/service/ddtags; the batcher
    never exceeds the intake's 1,000 logs per request."""
    from tests.sinks.http_receivers import DatadogReceiver

    with DatadogReceiver("dd-key") as dd:
        tid = log.create_tenant("acme").id
        dests = Destinations(log, LOOPBACK)
        dests.create(tid, name="dd", kind="datadog", format="json", url=dd.url,
                     settings={"service": "helpdesk", "ddtags": "env:test"},
                     secrets={"api_key": "dd-key"},
                     batch={"max_wait_ms": 0, "max_events": 1000})  # fmt: skip
        for _ in range(3):
            log.append(tid, [event(i) for i in range(900)])
        cp = log.checkpoint(tid)
        deliver_until(
            dests,
            lambda: sum(1 for x in dd.logs if x["kimonaudit"]["type"] == "audit.event") >= cp.size,
            timeout=60,
        )
        assert _seqs_of(dd.logs, lambda x: x["kimonaudit"]) == list(range(cp.size))
        assert all(n <= 1000 and size <= 5 * 1024 * 1024 for size, n in dd.requests)
        assert len(dd.requests) >= 3
        first = dd.logs[0]
        assert first["service"] == "helpdesk" and first["ddtags"] == "env:test"
        assert json.loads(first["message"])["data"]["action"] == "audit_stream.created"
        with pytest.raises(Exception, match=r"batch\.max_events"):
            dests.create(tid, name="big", kind="datadog", url=dd.url,
                         secrets={"api_key": "k"}, batch={"max_events": 5000})  # fmt: skip


@pytest.fixture
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode on loopback (a real HTTP server)."""
    from moto.server import ThreadedMotoServer

    from tests.servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_s3_archive_objects_and_manifests(log: AuditLog, s3_server: str) -> None:
    """gzip NDJSON objects under tenant/dt/hour keys named by seq range, each
    with a manifest naming its SHA-256 and the checkpoint that covers it;
    a redelivered batch writes the same keys and no duplicates."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                      aws_access_key_id="AKIDTEST", aws_secret_access_key="secret")  # fmt: skip
    s3.create_bucket(Bucket="audit-archive")
    tid = log.create_tenant("acme").id
    dests = Destinations(log, LOOPBACK)
    dest, _ = dests.create(tid, name="s3", kind="s3", url=s3_server,
                           settings={"bucket": "audit-archive", "prefix": "kimonaudit/"},
                           secrets={"access_key_id": "AKIDTEST", "secret_access_key": "secret"},
                           batch={"max_wait_ms": 0, "max_events": 10})  # fmt: skip
    log.append(tid, [event(i) for i in range(24)])
    size = log.store.tree_state(tid).size

    def objects() -> list[str]:
        listed = s3.list_objects_v2(Bucket="audit-archive").get("Contents", [])
        return sorted(o["Key"] for o in listed)

    deliver_until(dests, lambda: dests.get(tid, dest.id).health.lag_events == 0)
    keys = objects()
    data = [k for k in keys if k.endswith(".json.gz")]
    assert len(data) == 3 and len(keys) == 6
    import gzip
    import hashlib
    import re

    seqs = []
    for key in data:
        assert re.fullmatch(
            rf"kimonaudit/tenant={tid}/dt=\d{{4}}-\d\d-\d\d/hour=\d\d/\d{{20}}-\d{{20}}\.json\.gz",
            key,
        )
        body = s3.get_object(Bucket="audit-archive", Key=key)["Body"].read()
        lines = [json.loads(x) for x in gzip.decompress(body).decode().splitlines()]
        seqs += [x["seq"] for x in lines if x["type"] == "audit.event"]
        mkey = key.replace(".json.gz", ".manifest.json")
        manifest = json.loads(s3.get_object(Bucket="audit-archive", Key=mkey)["Body"].read())
        assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
        cp = manifest["checkpoint"]
        assert cp["tree_size"] > manifest["last_seq"]
        log.verify_checkpoint_note(cp["note"])  # a real signed checkpoint
    assert seqs == list(range(size))
    # Redeliver the first batch as after a crash: same key, nothing new.
    from dataclasses import replace

    state = log.store.get_delivery(tid, dest.id)
    log.store.save_delivery(replace(state, next_seq=0, cp_size=0), None)
    deliver_until(dests, lambda: dests.get(tid, dest.id).health.lag_events == 0)
    assert [k for k in objects() if k.endswith(".json.gz")][:3] == data
