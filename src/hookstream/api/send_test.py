"""POST /v1/endpoints/{id}/test: send a synthetic `hookstream.test` webhook now.

The API signs it exactly as the dispatcher would (every active secret, the
endpoint's custom headers) and sends it through the same guarded HTTP sender,
so a test send is refused where a delivery would be. Nothing is retried or
recorded: the answer is this one attempt's result.
"""

from __future__ import annotations

import secrets

import orjson
from aiohttp import web

from hookstream.api import schemas
from hookstream.api.endpoints import ENDPOINT_ID, find_endpoint
from hookstream.api.problems import json_response
from hookstream.api.routes import Operations
from hookstream.api.state import SENDER
from hookstream.egress import USER_AGENT
from hookstream.engine.clock import rfc3339, system_clock
from hookstream.engine.outcome import OutgoingRequest
from hookstream.engine.signing import SigningKey, signed_headers

routes = Operations("endpoints")
TEST_TYPE = "hookstream.test"


@routes.post(
    f"/v1/endpoints/{ENDPOINT_ID}/test", scope="endpoints:write", ok=(200, schemas.TEST_RESULT)
)
async def test_endpoint(request: web.Request) -> web.Response:
    """Send a signed `hookstream.test` event to the endpoint now; answer the attempt's result."""
    endpoint = await find_endpoint(request)
    now = system_clock()
    message_id = f"msg_test_{secrets.token_hex(12)}"
    body = orjson.dumps(
        {
            "type": TEST_TYPE,
            "timestamp": rfc3339(now),
            "data": {"endpoint_id": endpoint.id, "message": "a test webhook from hookstream"},
        }
    )
    keys = [SigningKey.of(s) for s in endpoint.signing_secrets(now)]
    headers = signed_headers(
        keys, message_id, int(now), body, endpoint.headers, user_agent=USER_AGENT
    )
    result = await request.app[SENDER].send(OutgoingRequest(endpoint.url, headers, body))
    return json_response(
        {
            "message_id": message_id,
            "ok": result.status is not None and 200 <= result.status < 300,
            "status": result.status,
            "duration_ms": round(result.duration_ms, 1),
            "error_class": result.error_class,
            "error": result.error,
            "response_excerpt": result.excerpt.decode(errors="replace")[:1000],
        }
    )
