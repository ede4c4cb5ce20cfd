"""Syslog over TCP (RFC 6587 octet counting) or TLS (RFC 5425).

Each event is one RFC 5424 message (`kimonaudit.sinks.syslog`) whose MSG is
the rendered event (a CEF line, or JSON). The connection goes to the
address the SSRF guard checked; TLS verifies the server certificate
against the system CAs or `ca_pem`, for the URL's host or `server_name`,
and presents `client_cert_pem`/`client_key_pem` when given. A batch
succeeds when every byte was written; syslog has no acknowledgement, so a
receiver that crashes after reading may lose what it had not stored (use a
receiver with a disk queue).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from typing import Any

from kimonaudit.sinks import syslog as rfc5424
from kimonaudit.sinks.transports.base import Batch, Outcome, Target, transport_error


def tls_context(settings: dict[str, Any] | Any, secrets: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=settings.get("ca_pem") or None)
    if settings.get("ca_pem") is None:
        ctx.load_default_certs()
    cert, key = secrets.get("client_cert_pem"), secrets.get("client_key_pem")
    if cert and key:
        # ssl loads a chain from files only: write them 0600, load, delete.
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for name, pem in (("c.pem", cert), ("k.pem", key)):
                path = os.path.join(d, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(pem)
                paths.append(path)
            ctx.load_cert_chain(paths[0], paths[1])
    return ctx


class SyslogTransport:
    def __init__(self, target: Target, secrets: dict[str, Any], timeout: float) -> None:
        self.target = target
        self.secrets = secrets
        self.timeout = timeout
        from urllib.parse import urlsplit

        u = urlsplit(target.url)
        self.tls = u.scheme == "tls"
        self.port = u.port or (6514 if self.tls else 514)
        self.sock: socket.socket | None = None
        s = target.settings
        self.hostname = str(s.get("hostname") or socket.gethostname())
        self.app_name = str(s.get("app_name") or "kimonaudit")
        self.facility = int(s.get("facility", rfc5424.FACILITY_LOG_AUDIT))

    def _connect(self) -> socket.socket:
        raw = socket.create_connection((self.target.address, self.port), timeout=self.timeout)
        if not self.tls:
            return raw
        ctx = tls_context(self.target.settings, self.secrets)
        name = self.target.settings.get("server_name") or self.target.host
        return ctx.wrap_socket(raw, server_hostname=name)

    def frames(self, batch: Batch) -> bytes:
        out = []
        for ev, rendered in zip(batch.events, batch.rendered, strict=True):
            msg = rendered
            severity = 6 if ev.is_checkpoint else rfc5424.SEVERITY[ev.data["severity"]]
            msgid = ev.type if ev.is_checkpoint else ev.data["action"]
            sd = [(rfc5424.SD_ID, [("tenant", ev.tenant_id), ("seq", str(ev.seq)),
                                   ("type", ev.type)])]  # fmt: skip
            out.append(
                rfc5424.octet_frame(
                    rfc5424.message(
                        msg,
                        time_us=ev.time_us,
                        severity=severity,
                        facility=self.facility,
                        hostname=self.hostname,
                        app_name=self.app_name,
                        msgid=msgid,
                        sd=sd,
                    )
                )
            )
        return b"".join(out)

    def send(self, batch: Batch) -> Outcome:
        data = self.frames(batch)
        try:
            if self.sock is None:
                self.sock = self._connect()
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            return transport_error(exc)
        return Outcome(True)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
