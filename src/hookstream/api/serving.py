"""Serving the API: a runner whose low-level errors are problem+json too.

aiohttp answers what its HTTP parser cannot read (a request line or header
over 8 KiB, a NUL in a header, a bad method) before any middleware runs, in
text/plain. The request handler here renders those answers as problem+json
like every other error, and still closes the connection, as aiohttp does.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_request import BaseRequest

from hookstream.api.problems import Problem
from hookstream.listening import listen

log = logging.getLogger(__name__)


class _ProblemRequestHandler(web.RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's error as problem+json; the connection is closed after it."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent; the connection is dropped")
        log.debug("unreadable request", extra={"status": status, "error": str(exc)})
        problem = Problem("" if status >= 500 else (message or "")[:300])
        problem.status = status
        problem.title = _phrase(status)
        response = problem.response(request.path)
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An AppRunner whose parser errors are answered as problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # the same server, with our handler factory
        return server


async def serve_api(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` on host:port; the caller cleans the returned runner up.

    ConfigError, one line naming the port, when it is taken."""
    runner = ApiRunner(app, access_log=None)
    await listen(runner, host, port)
    return runner


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
