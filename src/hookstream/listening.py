"""Listening on a port: one clear error when it is taken, for every server hookstream runs.

The API, the worker's /metrics, `hookstream dev` and the sink all start their
aiohttp runners here, so a taken port is one line (`cannot listen on
127.0.0.1:8080 (Address already in use)`) and exit 1, never a traceback with
the process left half started.
"""

from __future__ import annotations

import socket

from aiohttp import web

from hookstream.errors import ConfigError


async def listen(runner: web.BaseRunner, host: str, port: int, *, option: str = "--port") -> None:
    """Set `runner` up and serve it on host:port; ConfigError (runner cleaned up) if taken.

    The port is checked before the runner is set up, since setting up an app starts
    its clients (the API connects to Kafka and Redis) for nothing if it cannot listen.
    """
    refuse_taken_port(host, port, option=option)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise port_taken(host, port, exc, option) from None


def refuse_taken_port(host: str, port: int, *, option: str = "--port") -> None:
    """ConfigError when host:port cannot be bound now (checked before starting anything)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise port_taken(host, port, exc, option) from None


def port_taken(host: str, port: int, exc: OSError, option: str) -> ConfigError:
    """The one-line error for a port that cannot be listened on."""
    reason = exc.strerror or str(exc)
    return ConfigError([f"cannot listen on {host}:{port} ({reason}); choose another with {option}"])
