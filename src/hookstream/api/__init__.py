"""The aiohttp control API: endpoints, events, auth, problem+json errors."""

from hookstream.api.app import create_app

__all__ = ["create_app"]
