"""The `hookstream` command: roles against external servers, one-line errors, dying parents."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack, free_port, port_open
from hookstream.topics import TopicNames, topic_specs
from tests.conftest import ADMIN_KEY, AUTH, eventually

pytestmark = pytest.mark.integration


def _hookstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookstream", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_settings_fail_with_one_line_each() -> None:
    done = _hookstream("worker", env={"HOOKSTREAM_IN_FLIGHT": "lots", "HOOKSTREAM_PARTITIONS": "0"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("hookstream: error: HOOKSTREAM_") for line in lines)


def test_api_without_admin_key_is_one_line() -> None:
    done = _hookstream("api", env={"HOOKSTREAM_ADMIN_KEY": ""})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "hookstream: error: HOOKSTREAM_ADMIN_KEY is required to run the API"
    )


def test_sink_refuses_a_malformed_secret() -> None:
    done = _hookstream("sink", "--port", str(free_port()), "--secret", "whsec_???")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("hookstream: error: --secret:")


def test_bench_runs_from_the_checkout_and_refuses_bad_options_in_one_line() -> None:
    done = _hookstream("bench", "--help")
    assert done.returncode == 0
    assert "--scenario" in done.stdout
    bad = _hookstream("bench", "--bootstrap", "127.0.0.1:9092")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "hookstream bench: error: give both --bootstrap and --redis, or neither"
    )


async def test_api_role_serves_against_external_servers(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **settings.to_env(), "HOOKSTREAM_ADMIN_KEY": ADMIN_KEY}
    env.pop("HOOKSTREAM_BOOTSTRAP")
    env.pop("HOOKSTREAM_REDIS_URL")
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [
                sys.executable, "-m", "hookstream", "api",
                "--bootstrap", settings.bootstrap, "--redis", settings.redis_url,
                "--port", str(port),
            ],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        await eventually(lambda: port_open(port), timeout=60, message=lambda: log.read_text())
        async with aiohttp.ClientSession() as http:
            response = await http.get(
                f"http://127.0.0.1:{port}/v1/endpoints",
                headers=AUTH,
            )
            assert response.status == 200
            assert await response.json() == {"data": [], "next": None}
        api.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(api.wait), 30) == 0
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()


async def test_embedded_servers_die_with_their_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL cannot clean up; the kernel ends its servers."""
    ports = tmp_path / "ports"
    script = textwrap.dedent(
        f"""
        import time
        from hookstream.embedded import EmbeddedStack
        stack = EmbeddedStack().start()
        open({str(ports)!r}, "w").write(f"{{stack.kafka_port}} {{stack.redis_port}}")
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        await eventually(lambda: ports.exists() and ports.read_text() != "", timeout=60)
        kafka_port, redis_port = map(int, ports.read_text().split())
        assert port_open(kafka_port)
        assert port_open(redis_port)
        parent.send_signal(signal.SIGKILL)
        await asyncio.to_thread(parent.wait)
        await eventually(
            lambda: not port_open(kafka_port) and not port_open(redis_port),
            timeout=30,
            message="embedded servers outlived their parent",
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_stack_stop_is_idempotent_and_frees_the_ports() -> None:
    stack = EmbeddedStack().start()
    assert port_open(stack.kafka_port)
    stack.stop()
    stack.stop()
    assert not port_open(stack.kafka_port)
    assert not port_open(stack.redis_port)


def _embedded_server_pids() -> set[int]:
    """Processes of the embedded broker (tansu) and Valkey on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"tansu" in cmdline or b"valkey-server" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.mark.parametrize("role", [["dev"], ["api"], ["sink", "--no-verify"]], ids=lambda r: r[0])
def test_a_taken_port_is_one_line_and_exit_1(role: list[str]) -> None:
    """Scenario: the port is in use; the command says so in one line, exits 1, and leaves
    no broker or Valkey running (dev checks before it starts them)."""
    import socket

    before = _embedded_server_pids()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"HOOKSTREAM_ADMIN_KEY": ADMIN_KEY}
        done = _hookstream(*role, "--port", str(port), env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"hookstream: error: cannot listen on 127.0.0.1:{port} (Address already in use);"
        " choose another with --port"
    ]
    assert "Traceback" not in done.stdout
    assert _embedded_server_pids() <= before


async def test_the_topics_command_creates_every_topic_explicitly_and_once(
    stack: EmbeddedStack,
) -> None:
    prefix = f"topics{os.getpid()}."
    env = {
        **stack.settings(Settings()).to_env(),
        "HOOKSTREAM_TOPIC_PREFIX": prefix,
        "HOOKSTREAM_PARTITIONS": "5",
        "HOOKSTREAM_REPLICATION_FACTOR": "1",
        "HOOKSTREAM_LOG_LEVEL": "INFO",
    }
    first = await asyncio.to_thread(_hookstream, "topics", env=env)
    assert first.returncode == 0, first.stderr
    settings = Settings.load(env)
    specs = {s.name: s for s in topic_specs(settings)}
    assert set(specs) == TopicNames(settings).own()
    for spec in specs.values():
        assert spec.partitions >= 1
        compacted = spec.configs.get("cleanup.policy") == "compact"
        assert compacted or int(spec.configs["retention.ms"]) > 0, spec
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(specs))
    finally:
        await admin.close()
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    assert partitions == {name: spec.partitions for name, spec in specs.items()}
    assert {
        partitions[TopicNames(settings).deliveries],
        partitions[TopicNames(settings).events],
    } == {5}
    # Run again (a compose init job on every `up`): nothing to create, still exit 0.
    assert set(first.stdout.removeprefix("created: ").strip().split(", ")) == set(specs)
    again = await asyncio.to_thread(_hookstream, "topics", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "created: nothing (all exist)"
