"""Debian's rsyslog as a real syslog receiver, started by the tests: plain
TCP or TLS (gtls, certificates made here), octet-counted frames, every
message stored raw with the fields rsyslog parsed out of it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
SEP = "\x1f"  # between the fields of one stored line


def need_rsyslog() -> None:
    if not os.path.exists(RSYSLOGD):
        if os.environ.get("CI"):
            pytest.fail("rsyslogd is missing: scripts/setup.sh --test installs Debian's rsyslog")
        pytest.skip("rsyslogd not installed (scripts/setup.sh --test installs it as root)")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(d: Path, ips: tuple[str, ...] = ("127.0.0.1",)) -> dict[str, str]:
    """A CA and a server certificate for localhost and `ips` (PEM texts)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kimonaudit test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    srv_key = _key()
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                       *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    out = {
        "ca": ca.public_bytes(serialization.Encoding.PEM).decode(),
        "cert": srv.public_bytes(serialization.Encoding.PEM).decode(),
        "key": _pem_key(srv_key).decode(),
    }
    for name, text in out.items():
        (d / f"{name}.pem").write_text(text)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rsyslog:
    """rsyslogd -n on 127.0.0.1:<port>, TLS when `tls`."""

    def __init__(self, workdir: Path, tls: bool = False) -> None:
        need_rsyslog()
        self.dir = workdir / ("rsyslog-tls" if tls else "rsyslog-tcp")
        self.dir.mkdir()
        self.tls = tls
        self.port = _free_port()
        self.out = self.dir / "received.log"
        self.pki = make_pki(self.dir) if tls else {}
        driver = ""
        if tls:
            driver = (
                f'global(DefaultNetstreamDriverCAFile="{self.dir}/ca.pem" '
                f'DefaultNetstreamDriverCertFile="{self.dir}/cert.pem" '
                f'DefaultNetstreamDriverKeyFile="{self.dir}/key.pem")\n'
            )
        mod = (
            'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" '
            'StreamDriver.AuthMode="anon")'
            if tls
            else 'module(load="imtcp")'
        )
        fields = SEP.join(["%pri%", "%msgid%", "%structured-data%", "%msg%", "%rawmsg%"])
        conf = (
            f'global(workDirectory="{self.dir}")\n{driver}{mod}\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
            f'template(name="fields" type="string" string="{fields}\\n")\n'
            f'action(type="omfile" file="{self.out}" template="fields")\n'
        )
        (self.dir / "rsyslog.conf").write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Rsyslog:
        with (self.dir / "rsyslogd.out").open("wb") as log:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.dir / "rsyslog.conf"), "-i", str(self.dir / "pid")],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "rsyslogd.out").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not listen in time")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def records(self) -> list[dict[str, str]]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            parts = line.split(SEP)
            if len(parts) == 5:
                out.append(dict(zip(("pri", "msgid", "sd", "msg", "raw"), parts, strict=True)))
        return out
