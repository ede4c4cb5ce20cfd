"""Destination secrets sealed under the deployment key.

AES-256-GCM with a key derived by HKDF-SHA256 from the key file's actor
secret (which `kimonaudit keys rotate` keeps, so sealed secrets survive a
signing-key rotation). The associated data binds a blob to its tenant and
destination: a blob copied to another row does not open.

Blob: ``0x01 || 12-byte nonce || ciphertext+tag`` of the secrets' JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kimonaudit.errors import ConfigError

VERSION = b"\x01"
_INFO = b"kimonaudit/destination-secrets/v1"


def _key(deployment_secret: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return AESGCM(hkdf.derive(deployment_secret))


def _aad(tenant_id: str, destination_id: str) -> bytes:
    return f"{tenant_id}/{destination_id}".encode()


def seal(
    deployment_secret: bytes, tenant_id: str, destination_id: str, secrets: Mapping[str, Any]
) -> bytes:
    nonce = os.urandom(12)
    data = json.dumps(dict(secrets), separators=(",", ":"), sort_keys=True).encode()
    ct = _key(deployment_secret).encrypt(nonce, data, _aad(tenant_id, destination_id))
    return VERSION + nonce + ct


def unseal(
    deployment_secret: bytes, tenant_id: str, destination_id: str, blob: bytes
) -> dict[str, Any]:
    if blob[:1] != VERSION or len(blob) < 29:
        raise ConfigError(f"destination {destination_id}: sealed secrets in an unknown format")
    try:
        data = _key(deployment_secret).decrypt(
            blob[1:13], blob[13:], _aad(tenant_id, destination_id)
        )
    except InvalidTag:
        raise ConfigError(
            f"destination {destination_id}: its secrets do not open with this deployment's "
            "key file (was the key file replaced?)"
        ) from None
    out: dict[str, Any] = json.loads(data)
    return out
