"""The resolver every delivery connection goes through: resolve, check, hand on only
checked addresses (aiohttp connects to exactly these, with no second lookup)."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from hookstream.engine.destinations import EgressPolicy
from hookstream.errors import DestinationForbidden


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver and drops every address the policy does not permit.

    Raises DestinationForbidden when nothing permitted remains, so the attempt
    fails with a clear error class instead of reaching an internal service. A
    name the system resolver cannot even encode (an over-long label) is a
    failed lookup, not a crash.
    """

    def __init__(self, inner: AbstractResolver, policy: EgressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host` and keep only the addresses policy allows."""
        try:
            results = await self._inner.resolve(host, port, family)
        except UnicodeError as exc:
            raise OSError(f"{host} cannot be looked up: {exc}") from None
        if self._policy.allow_private:
            return results
        permitted = [r for r in results if self._policy.permits(r["host"])]
        if not permitted:
            raise DestinationForbidden(f"{host} resolves only to non-public addresses")
        return permitted

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
