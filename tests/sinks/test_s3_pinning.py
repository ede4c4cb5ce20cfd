"""S3 over https connects to the address the SSRF guard checked.

A real S3-compatible server (moto in server mode) behind TLS, with a CA
made here, listens on 127.0.0.3. The destination's endpoint is
``https://localhost:<port>``: the guard's resolver (injected, as
KIMONAUDIT_DESTINATION_RESOLVE chooses one in production) answers
127.0.0.3, while the system's own resolution of ``localhost`` (/etc/hosts)
gives 127.0.0.1, where a decoy listens on the same port. If the HTTP stack
resolved the name again, the decoy would see the connection. Then the
guard's next answer changes to 127.0.0.2 (rebinding to an address the
allow-list refuses): the delivery is refused and nothing connects there.
Only loopback addresses are used."""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import kimonaudit
from kimonaudit.destinations import Destinations
from kimonaudit.service import AuditLog
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import Deliverer
from tests.helpers import event
from tests.sinks.receivers import deliver_until
from tests.sinks.rsyslog import make_pki

SERVER_IP = "127.0.0.3"  # where the S3 server is: the checked address
SYSTEM_IP = "127.0.0.1"  # what the system resolver says localhost is: a decoy
REBOUND_IP = "127.0.0.2"  # the rebinding answer, not allow-listed: a decoy
# moto keeps its buckets per process: a name of our own, apart from other tests'.
BUCKET = f"pinned-archive-{secrets.token_hex(4)}"
CREDS = {"access_key_id": "AKIDTEST", "secret_access_key": "secret"}


class Decoy:
    """A TCP listener that only counts the connections it is offered."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@dataclass
class TlsS3:
    port: int
    ca_pem: str
    ca_file: str
    hosts: list[str] = field(default_factory=list)  # Host header of each request
    sni: list[str | None] = field(default_factory=list)  # SNI of each handshake
    decoys: list[Decoy] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def client(self) -> Any:
        """boto3 straight to the server's IP (the certificate names it too)."""
        import boto3

        return boto3.client("s3", endpoint_url=f"https://{SERVER_IP}:{self.port}",
                            region_name="us-east-1", verify=self.ca_file,
                            aws_access_key_id=CREDS["access_key_id"],
                            aws_secret_access_key=CREDS["secret_access_key"])  # fmt: skip

    def object_keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return sorted(o["Key"] for o in listed)

    def decoy_connections(self) -> int:
        return sum(d.connections for d in self.decoys)


def _start_decoys(port: int) -> list[Decoy]:
    decoys = []
    try:
        for host in (SYSTEM_IP, REBOUND_IP):
            decoys.append(Decoy(host, port))
        with contextlib.suppress(OSError):  # ::1 may be absent; localhost is 127.0.0.1 here
            decoys.append(Decoy("::1", port))
    except OSError:
        for d in decoys:
            d.close()
        raise
    return decoys


@pytest.fixture
def tls_s3(tmp_path: Path) -> Iterator[TlsS3]:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    pki = make_pki(tmp_path, ips=(SERVER_IP,))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    box = TlsS3(0, pki["ca"], str(tmp_path / "ca.pem"))
    ctx.sni_callback = lambda _obj, name, _ctx: box.sni.append(name)  # type: ignore[assignment]
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        box.hosts.append(environ.get("HTTP_HOST", ""))
        return moto_app(environ, start_response)

    for _ in range(20):  # a port free on every address we listen on
        server = make_server(SERVER_IP, 0, app, threaded=True,
                             request_handler=MotoRequestHandler, ssl_context=ctx)  # fmt: skip
        try:
            box.decoys = _start_decoys(server.server_address[1])
            break
        except OSError:
            server.server_close()
    else:
        pytest.fail("no port free on 127.0.0.1-3")
    box.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        box.client().create_bucket(Bucket=BUCKET)
        box.hosts.clear()
        box.sni.clear()
        yield box
    finally:
        server.shutdown()
        server.server_close()
        for d in box.decoys:
            d.close()


class Resolver:
    """The guard's resolver: answers `answer` (changeable), logs each lookup."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.lookups: list[tuple[str, str]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, self.answer))
        return [self.answer]


@pytest.fixture
def log(tmp_path: Path, key_file: str) -> Iterator[AuditLog]:
    lg = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=key_file)
    yield lg
    lg.close()


def _once(dests: Destinations) -> None:
    d = Deliverer(dests, schedule=(60,), lease_s=10, timeout_s=3)
    try:
        d.run_once()
    finally:
        d.close()


def test_s3_over_https_connects_to_the_checked_address(log: AuditLog, tls_s3: TlsS3) -> None:
    """Objects arrive at the server on the checked address, with the name as
    SNI and Host (so the certificate is verified for it); the decoy where the
    system resolves the name gets no connection. A rebinding to a refused
    address stops delivery before anything connects."""
    resolver = Resolver(SERVER_IP)
    dests = Destinations(log, ssrf.parse_allowlist(f"{SERVER_IP}/32"), resolver)
    tid = log.create_tenant("acme").id
    dest, _ = dests.create(tid, name="archive", kind="s3", url=tls_s3.url,
                           settings={"bucket": BUCKET, "ca_pem": tls_s3.ca_pem},
                           secrets=CREDS, batch={"max_wait_ms": 0, "max_events": 10})  # fmt: skip
    assert socket.gethostbyname("localhost") == SYSTEM_IP  # what re-resolving would reach
    log.append(tid, [event(i) for i in range(14)])
    deliver_until(dests, lambda: dests.get(tid, dest.id).health.lag_events == 0)
    assert tls_s3.decoy_connections() == 0
    assert tls_s3.hosts and set(tls_s3.hosts) == {f"localhost:{tls_s3.port}"}
    assert tls_s3.sni and set(tls_s3.sni) == {"localhost"}
    keys = tls_s3.object_keys()
    assert len([k for k in keys if k.endswith(".json.gz")]) == 2
    assert len([k for k in keys if k.endswith(".manifest.json")]) == 2
    assert len(resolver.lookups) >= 2  # at creation and before the delivery
    assert dests.get(tid, dest.id).health.delivery.last_error is None

    # DNS now answers an address the allow-list refuses: nothing connects.
    resolver.answer = REBOUND_IP
    seen = len(tls_s3.hosts)
    log.append(tid, [event(i) for i in range(100, 103)])
    _once(dests)
    h = dests.get(tid, dest.id).health
    assert h.status == "failing" and h.lag_events == 3
    assert f"{REBOUND_IP} is a loopback address" in h.delivery.last_error
    assert resolver.lookups[-1] == ("localhost", REBOUND_IP)
    assert tls_s3.decoy_connections() == 0 and len(tls_s3.hosts) == seen
    assert tls_s3.object_keys() == keys

    # Back to the checked address: the waiting entries follow, in order.
    resolver.answer = SERVER_IP
    due = replace(log.store.get_delivery(tid, dest.id), attempts=0, next_attempt_at=0)
    log.store.save_delivery(due, None)  # the next attempt now, not in a minute
    deliver_until(dests, lambda: dests.get(tid, dest.id).health.lag_events == 0)
    assert any(k.endswith(f"{15:020d}-{17:020d}.json.gz") for k in tls_s3.object_keys())
    assert tls_s3.decoy_connections() == 0


def test_s3_over_https_still_verifies_the_certificate(log: AuditLog, tls_s3: TlsS3) -> None:
    """Pinning the address does not loosen TLS: without the test CA the
    handshake fails and no request reaches the server."""
    dests = Destinations(log, ssrf.parse_allowlist(f"{SERVER_IP}/32"), Resolver(SERVER_IP))
    tid = log.create_tenant("acme").id
    dest, _ = dests.create(tid, name="archive", kind="s3", url=tls_s3.url,
                           settings={"bucket": BUCKET}, secrets=CREDS,
                           batch={"max_wait_ms": 0})  # fmt: skip
    _once(dests)
    h = dests.get(tid, dest.id).health
    assert h.status == "failing" and "CERTIFICATE_VERIFY_FAILED" in h.delivery.last_error
    assert tls_s3.hosts == [] and tls_s3.decoy_connections() == 0


def test_s3_ca_pem_is_checked_at_creation(log: AuditLog) -> None:
    dests = Destinations(log, ssrf.parse_allowlist(f"{SERVER_IP}/32"), Resolver(SERVER_IP))
    tid = log.create_tenant("acme").id
    with pytest.raises(Exception, match="PEM") as err:
        dests.create(tid, name="a", kind="s3", url="https://localhost:9",
                     settings={"bucket": BUCKET, "ca_pem": "not a certificate"},
                     secrets=CREDS)  # fmt: skip
    assert getattr(err.value, "field", None) == "settings.ca_pem"
