"""Signing matches the Standard Webhooks spec and its reference library."""

from __future__ import annotations

import base64
import hmac
import random
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.engine.signing import (
    InvalidSignature,
    SigningKey,
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


def test_a_signing_key_reproduces_the_published_example_every_time() -> None:
    key = SigningKey.of(SPEC_SECRET)
    for _ in range(3):  # signing must not change the keyed state
        assert key.sign(SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_a_signing_key_signs_as_hmac_digest_does_for_any_input() -> None:
    rng = random.Random(46)
    keys = [rng.randbytes(n) for n in (24, 32, 64, 65, 200)]  # past 64 bytes HMAC hashes the key
    signers = [SigningKey(key) for key in keys]
    for _ in range(500):
        n = rng.randrange(len(keys))
        msg_id = f"msg_{rng.randrange(10**9)}"
        timestamp = rng.randrange(2**40)
        body = rng.randbytes(rng.choice((0, 1, 63, 64, 300, 5000)))
        mac = hmac.digest(keys[n], b"%s.%d.%s" % (msg_id.encode(), timestamp, body), "sha256")
        expected = "v1," + base64.b64encode(mac).decode()
        assert signers[n].sign(msg_id, timestamp, body) == expected
        assert sign(keys[n], msg_id, timestamp, body) == expected


def test_signing_key_of_refuses_what_secret_key_refuses() -> None:
    with pytest.raises(ValueError, match="base64"):
        SigningKey.of("whsec_not base64!")


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
        "webhook-signature": signature_header([SigningKey.of(secret)], SPEC_ID, ts, body),
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
    header = signature_header([SigningKey.of(old), SigningKey.of(new)], SPEC_ID, 100, body)
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
