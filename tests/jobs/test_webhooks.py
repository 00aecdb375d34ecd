"""Standard Webhooks signing, verification, backoff and one delivery attempt against a real receiver."""

import base64
import hashlib
import hmac
import random
import time

import pytest

from jobs.webhooks import (
    WebhookVerificationError,
    backoff_delay,
    build_payload,
    deliver_once,
    generate_secret,
    sign,
    verify,
)
from tests.support.servers import webhook_receiver

# Test vector from the Standard Webhooks specification's reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_reference_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG


def test_signature_is_hmac_sha256_of_id_timestamp_body():
    secret = generate_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"msg_1.100.{}", hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", 100, b"{}") == "v1," + expected


def headers(sig=SPEC_SIG, ts=SPEC_TS, msg_id=SPEC_ID):
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_verify_accepts_a_valid_request_and_any_of_several_signatures():
    verify(SPEC_SECRET, headers(), SPEC_BODY, now=SPEC_TS)
    verify(SPEC_SECRET, headers(sig="v1,bogus " + SPEC_SIG), SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize(
    "hdrs,body,now",
    [
        (headers(), b'{"test": 1}', SPEC_TS),  # body changed
        (headers(msg_id="msg_other"), SPEC_BODY, SPEC_TS),  # id changed
        (headers(), SPEC_BODY, SPEC_TS + 301),  # too old (replay)
        (headers(sig="v2," + SPEC_SIG[3:]), SPEC_BODY, SPEC_TS),
        ({"webhook-id": SPEC_ID}, SPEC_BODY, SPEC_TS),
    ],
)
def test_verify_refuses_tampering_replays_and_missing_headers(hdrs, body, now):
    with pytest.raises(WebhookVerificationError):
        verify(SPEC_SECRET, hdrs, body, now=now)


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    rng = random.Random(0)
    delays = [backoff_delay(n, 2.0, 60.0, rng) for n in range(1, 10)]
    assert 1.0 <= delays[0] <= 2.0 and 2.0 <= delays[1] <= 4.0
    assert all(30.0 <= d <= 60.0 for d in delays[5:])
    assert len({round(backoff_delay(3, 2.0, 60.0), 6) for _ in range(20)}) > 1


def test_payload_shape():
    body = build_payload("animation.completed", {"id": "anim_1"}, at=0)
    assert body == b'{"type":"animation.completed","timestamp":"1970-01-01T00:00:00Z","data":{"id":"anim_1"}}'


def test_delivery_is_signed_and_verifiable_by_the_receiver():
    secret = generate_secret()
    with webhook_receiver() as receiver:
        result = deliver_once(
            receiver.url, b'{"a":1}', msg_id="msg_x", secret=secret, timeout_s=5, allow_private=True
        )
        got = receiver.get(5)
    assert result.result == "delivered" and result.status_code == 200
    verify(secret, got.headers, got.body, now=time.time())
    assert got.headers["webhook-id"] == "msg_x"


@pytest.mark.parametrize("code,expected", [(500, "retry"), (410, "gone"), (204, "delivered"), (302, "retry")])
def test_delivery_outcome_by_status(code, expected):
    with webhook_receiver() as receiver:
        receiver.responses = [code]
        result = deliver_once(receiver.url, b"{}", msg_id="m", secret=None, timeout_s=5, allow_private=True)
    assert result.result == expected


def test_delivery_to_a_private_address_is_refused_at_send_time():
    with webhook_receiver() as receiver:
        result = deliver_once(receiver.url, b"{}", msg_id="m", secret=None, timeout_s=5, allow_private=False)
        assert receiver.requests.empty()
    assert result.result == "refused" and result.error == "url_address_not_allowed"


def test_unreachable_receiver_is_retried():
    result = deliver_once(
        "http://127.0.0.1:9/", b"{}", msg_id="m", secret=None, timeout_s=2, allow_private=True
    )
    assert result.result == "retry"
