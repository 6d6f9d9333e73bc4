"""How an environment variable's text becomes a setting's value."""

from __future__ import annotations

from typing import Any


def parse_value(type_name: Any, raw: str) -> Any:
    """The value of a setting of type `type_name` (bool, int, float or str) from
    its environment variable's text; ValueError saying what was expected.

    With `from __future__ import annotations` field types are strings."""
    kind = type_name if isinstance(type_name, str) else type_name.__name__
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if kind == "int":
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ValueError("expected a whole number") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    return raw
