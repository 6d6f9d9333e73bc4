"""The `hookstream` command: dev | worker | api | sink | topics | bench.

Every command builds one Settings object (HOOKSTREAM_* environment, then flags)
and fails at start with one line per bad value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from hookstream import __version__, logs
from hookstream.config import Settings
from hookstream.errors import ConfigError, HookstreamError
from hookstream.listening import listen
from hookstream.stacks import every_suspended, suspended_at

log = logging.getLogger("hookstream")

# The cyclic collector runs after this many container allocations (Python's
# default is 700; generations 1 and 2 after 20 of the one below). At 700 a
# steady worker spent 13-15% of its CPU in collections and paused its loop
# for ~55 ms at each full one (decision 041). Most objects here die by reference count;
# the collector only finds cycles, which wait a little longer now.
GC_THRESHOLDS = (50_000, 20, 20)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `hookstream` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        _bench(argv[1:])  # the bench has its own options (python -m bench --help)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(os.environ, **_overrides(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hookstream: error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level)
    command: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    try:
        code = _run(command(settings, args))
    except HookstreamError as exc:
        print(f"hookstream: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookstream", description="Event-streaming webhook delivery engine."
    )
    parser.add_argument("--version", action="version", version=f"hookstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def servers(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap", help="Kafka bootstrap servers (HOOKSTREAM_BOOTSTRAP)")
        p.add_argument("--redis", dest="redis_url", help="Redis URL (HOOKSTREAM_REDIS_URL)")

    dev = sub.add_parser("dev", help="run everything on an embedded broker and Valkey")
    dev.add_argument("--port", dest="api_port", type=int, help="API port (default 8080)")
    dev.set_defaults(run=_dev)

    worker = sub.add_parser("worker", help="run the router and dispatcher")
    servers(worker)
    worker.set_defaults(run=_worker)

    api = sub.add_parser("api", help="run the control API")
    servers(api)
    api.add_argument("--host", dest="api_host", help="bind address (default 127.0.0.1)")
    api.add_argument("--port", dest="api_port", type=int, help="port (default 8080)")
    api.set_defaults(run=_api)

    sink = sub.add_parser("sink", help="receive, verify and print webhooks")
    sink.add_argument("--host", dest="sink_host", default="127.0.0.1")
    sink.add_argument("--port", dest="sink_port", type=int, default=9000)
    verify = sink.add_mutually_exclusive_group(required=True)
    verify.add_argument("--secret", action="append", help="endpoint secret (whsec_...)")
    verify.add_argument("--no-verify", action="store_true", help="accept unsigned deliveries")
    sink.add_argument("--quiet", action="store_true", help="print counts, not each delivery")
    sink.set_defaults(run=_sink)

    sub.add_parser("bench", help="measure the engine on this machine (from a source checkout)")

    topics = sub.add_parser("topics", help="create the topics that do not exist yet")
    servers(topics)
    topics.set_defaults(run=_topics)
    return parser


def _bench(args: list[str]) -> None:
    """Replace this process with `python -m bench ARGS` run from the source checkout.

    The bench lives beside the package, not in it (nothing imports bench/).
    """
    from pathlib import Path

    here = Path(__file__).resolve().parents[2]
    root = next((d for d in (here, Path.cwd()) if (d / "bench" / "__main__.py").exists()), None)
    if root is None:
        print("hookstream: error: bench/ not found: run from a source checkout", file=sys.stderr)
        raise SystemExit(2)
    os.chdir(root)
    os.execv(sys.executable, [sys.executable, "-m", "bench", *args])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("bootstrap", "redis_url", "api_host", "api_port")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; installed before anything starts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_signalled() -> None:
    await _stop_on_signals().wait()


async def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from hookstream.consumers.worker import Worker

    stop = _stop_on_signals()
    stopping = asyncio.create_task(stop.wait())
    worker = Worker(settings)
    # Starting joins two consumer groups and may take a while; a signal meanwhile
    # cancels the start and shuts down what was started.
    starting = asyncio.create_task(worker.start())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    failed: asyncio.Task[BaseException] | None = None
    if starting.done() and starting.exception() is None:
        failed = asyncio.create_task(worker.run_until_failure())
        await asyncio.wait({stopping, failed}, return_when=asyncio.FIRST_COMPLETED)
    else:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
    stopping_cleanly = asyncio.create_task(worker.stop())
    stopped, _pending = await asyncio.wait({stopping_cleanly}, timeout=settings.shutdown_timeout_s)
    if not stopped:
        # A clean stop needs the broker (commits, closing the clients); without
        # it the stop can wait forever. Uncommitted deliveries are delivered
        # again by the next worker, so leaving now loses nothing.
        log.error(
            f"worker did not stop within {settings.shutdown_timeout_s:g} s; "
            "exiting without a clean stop (uncommitted deliveries will be sent again)",
            extra={"waiting_in": suspended_at(stopping_cleanly), "tasks": every_suspended()},
        )
        logging.shutdown()
        os._exit(1)
    stopping_cleanly.result()  # a stop that failed raises here, as before
    if starting.done() and not starting.cancelled() and starting.exception() is not None:
        raise starting.exception()  # type: ignore[misc]
    return 1 if failed is not None and failed.done() else 0


async def _api(settings: Settings, _: argparse.Namespace) -> int:
    from hookstream.api import create_app
    from hookstream.api.serving import serve_api

    runner = await serve_api(create_app(settings), settings.api_host, settings.api_port)
    log.info("api listening", extra={"url": f"http://{settings.api_host}:{settings.api_port}"})
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()
    return 0


async def _sink(_: Settings, args: argparse.Namespace) -> int:
    from hookstream.sink import SinkRecorder, create_sink_app, line_printer

    try:
        from hookstream.engine.signing import secret_key

        for secret in args.secret or ():
            secret_key(secret)
    except ValueError as exc:
        raise HookstreamError(f"--secret: {exc}") from None
    recorder = SinkRecorder(keep=False)
    app = create_sink_app(args.secret, recorder, printer=None if args.quiet else line_printer())
    runner = web.AppRunner(app, access_log=None)
    await listen(runner, args.sink_host, args.sink_port)
    mode = "verifying signatures" if args.secret else "NOT verifying signatures"
    print(f"hookstream sink on http://{args.sink_host}:{args.sink_port}/ ({mode})", flush=True)
    try:
        if args.quiet:
            await _print_counts(recorder)
        else:
            await _until_signalled()
    finally:
        await runner.cleanup()
    return 0


async def _print_counts(recorder: Any) -> None:
    waiter = asyncio.create_task(_until_signalled())
    while not waiter.done():
        await asyncio.wait({waiter}, timeout=1.0)
        print(f"accepted={recorder.accepted} rejected={recorder.rejected}", flush=True)


async def _topics(settings: Settings, _: argparse.Namespace) -> int:
    from hookstream.topics import ensure_topics

    created = await ensure_topics(settings)
    print("created: " + (", ".join(created) if created else "nothing (all exist)"))
    return 0


async def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from hookstream.dev import run_dev

    await run_dev(settings, stop=_until_signalled)
    return 0
