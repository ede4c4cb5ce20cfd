"""Standard Webhooks signing, verified by the `standardwebhooks` package."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import webhooks


def test_a_receiver_verifies_unchanged() -> None:
    """The reference library accepts our headers and returns the body."""
    secret = webhooks.new_secret()
    body = b'{"type":"audit.event","data":{"x":"\xc3\xa9"}}'
    h = webhooks.headers([secret], "msg_d1_0-9", int(time.time()), body)
    assert Webhook(secret).verify(body, h)["type"] == "audit.event"
    assert h["webhook-signature"] == Webhook(secret).sign(
        "msg_d1_0-9",
        __import__("datetime").datetime.fromtimestamp(int(h["webhook-timestamp"])),
        body,
    )


def test_rotation_sends_both_signatures() -> None:
    """During a rotation a receiver holding either secret verifies."""
    old, new = webhooks.new_secret(), webhooks.new_secret()
    body = b"[]"
    h = webhooks.headers([new, old], "m1", int(time.time()), body)
    assert h["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(body, h)
    Webhook(new).verify(body, h)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, h)


def test_tampered_body_or_id_fails() -> None:
    """A changed body or message id no longer verifies."""
    secret = webhooks.new_secret()
    h = webhooks.headers([secret], "m1", int(time.time()), b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{ }", h)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", {**h, "webhook-id": "m2"})


@pytest.mark.parametrize("bad", ["", "abc", "whsec_", "whsec_!!!", "whsec_c2hvcnQ="])
def test_malformed_secrets_are_refused(bad: str) -> None:
    """A secret must be whsec_ + base64 of 24-64 bytes."""
    with pytest.raises(InvalidInput):
        webhooks.secret_bytes(bad)
