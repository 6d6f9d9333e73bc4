"""JSON Schemas of request and response bodies: what validates requests and what
the OpenAPI document publishes are these same objects.

Limits come from the engine's constants, so the schema and the engine's own
deeper checks (URL safety, globs, filters, headers) agree.
"""

from __future__ import annotations

from typing import Any

from hookstream.engine import catalog, custom_headers, endpoint, names, source
from hookstream.engine.apikeys import SCOPES
from hookstream.engine.retry import MAX_ATTEMPTS_LIMIT, RETRY_POLICY_KINDS

Schema = dict[str, Any]

MAX_BATCH = 1000
ID = {"type": "string", "pattern": r"^[a-zA-Z0-9_.:\-]{1,128}$"}
TIMESTAMP = {"type": "string", "format": "date-time"}
METADATA = {
    "type": "object",
    "maxProperties": catalog.MAX_METADATA_KEYS,
    "additionalProperties": {"type": "string", "maxLength": catalog.MAX_METADATA_VALUE},
}
HEADERS = {
    "type": "object",
    "maxProperties": custom_headers.MAX_HEADERS,
    "additionalProperties": {"type": "string", "maxLength": custom_headers.MAX_VALUE_LENGTH},
    "description": "Added to every delivery. Hop-by-hop, framing and webhook-* names are refused.",
}
FILTER = {
    "type": ["object", "null"],
    "description": "Mongo-style operators over dotted paths ($eq $ne $gt $gte $lt $lte $in "
    "$nin $exists $regex $and $or $not); null clears it.",
}


def nullable(schema: Schema) -> Schema:
    """`schema` or null (PATCH: null resets the field)."""
    return {"anyOf": [schema, {"type": "null"}]}


ENDPOINT_FIELDS: Schema = {
    "url": {"type": "string", "maxLength": 2048},
    "description": {"type": "string", "maxLength": endpoint.MAX_DESCRIPTION},
    "event_types": {
        "type": "array",
        "minItems": 1,
        "maxItems": endpoint.MAX_EVENT_TYPES,
        "items": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    "channels": {"type": "array", "maxItems": names.MAX_CHANNELS, "items": ID},
    "filter": FILTER,
    "headers": HEADERS,
    "rate_limit": {"type": "number", "exclusiveMinimum": 0, "maximum": endpoint.MAX_RATE_LIMIT},
    "retry_policy": {"enum": list(RETRY_POLICY_KINDS)},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT},
    "max_concurrency": {"type": "integer", "minimum": 1, "maximum": endpoint.MAX_CONCURRENCY},
    "disabled": {"type": "boolean"},
    "operational": {"type": "boolean"},
    "ordering": {
        "enum": list(endpoint.ORDERINGS),
        "description": "`subject`: each subject's messages one at a time, in publish order",
    },
    "metadata": METADATA,
}
ENDPOINT_CREATE: Schema = {
    "type": "object",
    "properties": {
        "tenant": ID,
        **ENDPOINT_FIELDS,
        "replay_since": {"type": "string", "description": "RFC 3339: replay events since"},
    },
    "required": ["url"],
    "additionalProperties": False,
    "description": "`tenant` may be left out by a key bound to a tenant.",
}
ENDPOINT_PATCH: Schema = {
    "type": "object",
    "properties": {
        name: (schema if name in ("url", "disabled", "operational", "filter") else nullable(schema))
        for name, schema in ENDPOINT_FIELDS.items()
    },
    "additionalProperties": False,
}
ENDPOINT: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "tenant": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "channels": {"type": "array", "items": {"type": "string"}},
        "filter": {"type": ["object", "null"]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "description": {"type": "string"},
        "disabled": {"type": "boolean"},
        "disabled_reason": {"type": "string"},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "retry_policy": {"type": "string"},
        "max_attempts": {"type": ["integer", "null"]},
        "rate_limit": {"type": ["number", "null"]},
        "max_concurrency": {"type": ["integer", "null"]},
        "operational": {"type": "boolean"},
        "ordering": {"enum": list(endpoint.ORDERINGS)},
    },
    "required": ["id", "tenant", "url", "event_types", "disabled", "created_at"],
}
SECRET = {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]{32,}$"}
ENDPOINT_WITH_SECRET: Schema = {
    **ENDPOINT,
    "properties": {
        **ENDPOINT["properties"],
        "secret": SECRET,
        "replay": {"type": "object", "description": "the replay task, with replay_since"},
    },
    "required": [*ENDPOINT["required"], "secret"],
}
SECRET_VIEW: Schema = {
    "type": "object",
    "properties": {
        "secret": SECRET,
        "previous_expire_at": {"type": "array", "items": TIMESTAMP},
    },
    "required": ["secret", "previous_expire_at"],
}
ROTATE: Schema = {
    "type": "object",
    "properties": {"secret": SECRET},
    "additionalProperties": False,
    "description": "Leave out `secret` to have a new one generated.",
}
TEST_RESULT: Schema = {
    "type": "object",
    "properties": {
        "message_id": {"type": "string"},
        "ok": {"type": "boolean"},
        "status": {"type": ["integer", "null"]},
        "duration_ms": {"type": "number"},
        "error_class": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "response_excerpt": {"type": "string"},
    },
    "required": ["message_id", "ok", "status", "duration_ms"],
}

TENANT_CREATE: Schema = {
    "type": "object",
    "properties": {
        "id": ID,
        "name": {"type": "string", "maxLength": catalog.MAX_NAME},
        "metadata": METADATA,
    },
    "required": ["id"],
    "additionalProperties": False,
}
TENANT: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "metadata": {"type": "object"},
        "created_at": TIMESTAMP,
    },
    "required": ["id", "name", "created_at"],
}

SOURCE_CREATE: Schema = {
    "type": "object",
    "properties": {
        "id": {**ID, "maxLength": source.MAX_SOURCE_ID},
        "topic": {"type": "string", "pattern": source.TOPIC_RE.pattern},
        "format": {"enum": list(source.FORMATS)},
        "map": {
            "type": "object",
            "propertyNames": {"enum": list(source.MAP_FIELDS)},
            "additionalProperties": {"type": "string", "maxLength": source.MAX_SPEC},
            "description": (
                'Where each event field is read: a JSON Pointer ("/a/b"), "key", '
                '"header:NAME" or "=literal".'
            ),
        },
        "start": {"enum": list(source.STARTS)},
    },
    "required": ["id", "topic", "format"],
    "additionalProperties": False,
}
SOURCE: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "topic": {"type": "string"},
        "format": {"enum": list(source.FORMATS)},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "start": {"enum": list(source.STARTS)},
        "start_offsets": {"type": "object", "additionalProperties": {"type": "integer"}},
        "created_at": TIMESTAMP,
    },
    "required": ["id", "topic", "format", "map", "start", "start_offsets", "created_at"],
}

EVENT_TYPE_CREATE: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": names.MAX_TYPE_LENGTH},
        "description": {"type": "string", "maxLength": catalog.MAX_DESCRIPTION},
        "schema": {
            "type": ["object", "null"],
            "description": "A JSON Schema (2020-12) that `data` of this type must satisfy.",
        },
    },
    "required": ["name"],
    "additionalProperties": False,
}
EVENT_TYPE: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "schema": {"type": ["object", "null"]},
        "created_at": TIMESTAMP,
    },
    "required": ["name", "created_at"],
}

EVENT: Schema = {
    "type": "object",
    "properties": {
        "id": ID,
        "type": {"type": "string", "minLength": 1, "maxLength": names.MAX_TYPE_LENGTH},
        "tenant": ID,
        "subject": {"type": "string", "minLength": 1, "maxLength": 256},
        "occurred_at": {"type": "string"},
        "channels": {"type": "array", "maxItems": names.MAX_CHANNELS, "items": ID},
        "data": {"type": "object"},
    },
    "required": ["type", "data"],
    "additionalProperties": False,
    "description": "`tenant` may be left out by a key bound to a tenant; `id` is generated "
    "when absent. An id seen again within the idempotency window is not published twice.",
}
EVENT_BATCH: Schema = {
    "type": "object",
    "properties": {
        "events": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": EVENT}
    },
    "required": ["events"],
    "additionalProperties": False,
}
ACCEPTED_EVENT: Schema = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "duplicate": {"type": "boolean"}},
    "required": ["id", "duplicate"],
}
ACCEPTED_BATCH: Schema = {
    "type": "object",
    "properties": {"data": {"type": "array", "items": ACCEPTED_EVENT}},
    "required": ["data"],
}

FILTER_TEST: Schema = {
    "type": "object",
    "properties": {
        "filter": {"type": "object"},
        "event_type": {"type": "string", "minLength": 1, "maxLength": 200},
        "tenant": ID,
        "last": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    "required": ["filter"],
    "additionalProperties": False,
}
FILTER_RESULT: Schema = {
    "type": "object",
    "properties": {
        "examined": {"type": "integer"},
        "matched": {"type": "integer"},
        "data": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["examined", "matched", "data"],
}

API_KEY_CREATE: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": catalog.MAX_NAME},
        "scopes": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": list(SCOPES)},
        },
        "tenant": ID,
        "tier": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    "required": ["name", "scopes"],
    "additionalProperties": False,
}
API_KEY: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "hint": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "tenant": {"type": ["string", "null"]},
        "tier": {"type": "string"},
        "created_at": TIMESTAMP,
    },
    "required": ["id", "name", "hint", "scopes", "tier", "created_at"],
}
API_KEY_WITH_KEY: Schema = {
    **API_KEY,
    "properties": {**API_KEY["properties"], "key": {"type": "string"}},
    "required": [*API_KEY["required"], "key"],
}

DLQ_FILTERS: Schema = {
    "type": "object",
    "properties": {
        "tenant": {"type": "string"},
        "endpoint_id": {"type": "string"},
        "event_type": {"type": "string"},
        "since": {"type": "string"},
        "until": {"type": "string"},
    },
    "additionalProperties": False,
}
RECOVER: Schema = {
    "type": "object",
    "properties": {"since": {"type": "string"}, "until": {"type": "string"}},
    "required": ["since"],
    "additionalProperties": False,
}
REPLAY: Schema = {
    "type": "object",
    "properties": {
        "since": {"type": "string", "description": "RFC 3339: events logged at or after"},
        "until": {"type": "string", "description": "RFC 3339: events logged before"},
        "event_types": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
    },
    "required": ["since"],
    "additionalProperties": False,
}
TASK_STARTED: Schema = {
    "type": "object",
    "properties": {"task_id": {"type": "string"}, "status": {"type": "string"}},
    "required": ["task_id", "status"],
}
OBJECT: Schema = {"type": "object"}


def page(item: Schema) -> Schema:
    """A cursor page of `item`: `data`, and `next` (a link, or null on the last page)."""
    return {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": item},
            "next": {"type": ["string", "null"]},
        },
        "required": ["data", "next"],
    }


PROBLEM: Schema = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status"],
}
