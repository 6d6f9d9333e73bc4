"""Signing matches the Standard Webhooks spec and its reference library."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.engine.signing import (
    InvalidSignature,
    generate_secret,
    secret_key,
    sign,
    signature_header,
    verify,
)

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_published_standard_webhooks_example() -> None:
    assert sign(secret_key(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_generated_secret_has_the_prefix_and_at_least_24_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert generate_secret() != secret


@pytest.mark.parametrize(
    ("secret", "message"),
    [("whsec_not base64!", "not base64"), ("whsec_" + base64.b64encode(b"x" * 8).decode(), "24")],
)
def test_secret_key_refuses_bad_secrets(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secret_key(secret)


def _headers(secret: str, ts: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([secret_key(secret)], SPEC_ID, ts, body),
    }


def test_reference_library_verifies_what_we_sign() -> None:
    secret = generate_secret()
    body = '{"type":"invoice.paid","data":{"emoji":"😀","nul":"\\u0000"}}'.encode()
    # The official library checks the timestamp against its own clock, so sign "now".
    headers = _headers(secret, int(time.time()), body)
    assert Webhook(secret).verify(body, headers) is not None


def test_reference_library_rejects_a_tampered_body() -> None:
    secret = generate_secret()
    headers = _headers(secret, int(time.time()), b'{"amount":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"amount":2}', headers)


def test_verify_accepts_any_of_several_signatures() -> None:
    old, new = generate_secret(), generate_secret()
    body = b"{}"
    header = signature_header([secret_key(old), secret_key(new)], SPEC_ID, 100, body)
    hdrs = {"webhook-id": SPEC_ID, "webhook-timestamp": "100", "webhook-signature": header}
    verify([new], hdrs, body, now=100)
    verify([old], hdrs, body, now=100)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify([generate_secret()], hdrs, body, now=100)


def test_verify_rejects_a_stale_timestamp() -> None:
    secret = generate_secret()
    headers = _headers(secret, 1000, b"{}")
    verify([secret], headers, b"{}", now=1000 + 299)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify([secret], headers, b"{}", now=1000 + 301)


def test_verify_rejects_missing_headers() -> None:
    with pytest.raises(InvalidSignature, match="missing"):
        verify([generate_secret()], {}, b"{}", now=0)
