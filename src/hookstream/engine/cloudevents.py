"""The CloudEvents Kafka bindings, and the JSON pieces of a Kafka record.

`cloudevent_document` reads a record in either binding as the structured
document (attributes and `data`):

- binary mode: `ce_*` headers are the attributes, the value is `data`,
  decoded by the `content-type` header;
- structured mode: `content-type: application/cloudevents+json`, the value
  is the event, with `data` or `data_base64`.

Data that is not JSON (`application/xml`, say) stays a `NotJson` marker: the
caller says so when it needs it as an event's data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.engine import json_input
from hookstream.errors import FieldProblem, InvalidInput

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class NotJson:
    """Data of a content type hookstream cannot deliver as a JSON object."""

    content_type: str


CE_REQUIRED = ("id", "source", "type")


def cloudevent_document(value: bytes | None, headers: Headers) -> dict[str, Any]:
    """A Kafka record in either CloudEvents binding as the structured document."""
    lowered: dict[str, bytes] = {}
    for name, raw in headers:
        lowered.setdefault(name.lower(), raw)
    content_type = (
        utf8(lowered["content-type"], "content-type") if "content-type" in lowered else None
    )
    media = _media_type(content_type)
    if media == "application/cloudevents+json":
        document = json_value(value, "the structured CloudEvent")
        if not isinstance(document, dict):
            raise InvalidInput([FieldProblem("$", "a structured CloudEvent must be a JSON object")])
        if "data_base64" in document:
            encoded = document.pop("data_base64")
            try:
                data = (
                    base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
                )
            except (binascii.Error, ValueError):
                data = None
            if data is None:
                raise InvalidInput([FieldProblem("data_base64", "is not base64")])
            document["data"] = _data(data, document.get("datacontenttype"))
    elif media is not None and media.startswith("application/cloudevents"):
        raise InvalidInput(
            [FieldProblem("$", f"CloudEvents {media} is not read; one event per record")]
        )
    elif "ce_specversion" in lowered:
        document = {
            name[3:]: utf8(raw, f"header {name}")
            for name, raw in lowered.items()
            if name.startswith("ce_") and len(name) > 3
        }
        if content_type is not None:
            document["datacontenttype"] = content_type
        if value is not None:
            document["data"] = _data(value, content_type)
    else:
        raise InvalidInput(
            [
                FieldProblem(
                    "$",
                    "not a CloudEvent: no ce_specversion header, and content-type is not"
                    " application/cloudevents+json",
                )
            ]
        )
    if document.get("specversion") != "1.0":
        raise InvalidInput([FieldProblem("specversion", "must be 1.0")])
    missing = [a for a in CE_REQUIRED if not isinstance(document.get(a), str) or not document[a]]
    if missing:
        raise InvalidInput(
            [FieldProblem(a, "a CloudEvent needs this attribute as a string") for a in missing]
        )
    return document


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _data(value: bytes, content_type: Any) -> Any:
    media = _media_type(content_type) if isinstance(content_type, str) else None
    if media is None or media == "application/json" or media.endswith("+json"):
        return json_value(value, "data")
    return NotJson(media)


def json_value(value: bytes | None, what: str) -> Any:
    """A record part parsed as JSON within the limits; InvalidInput when it is not."""
    if value is None:
        raise InvalidInput([FieldProblem("$", "empty record")])
    try:
        return json_input.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput([FieldProblem("$", f"{what} is not valid JSON: {exc}")]) from None


def utf8(value: bytes, what: str) -> str:
    """`value` decoded; InvalidInput naming `what` when it is not UTF-8."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidInput([FieldProblem("$", f"{what} is not UTF-8")]) from None
