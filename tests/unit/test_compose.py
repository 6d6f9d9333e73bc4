"""docker-compose.yml, the Dockerfile and the monitoring config agree with the code.

There is no Docker engine where the tests run, so this reads the files: every
HOOKSTREAM_* variable is a setting with a valid value, every command parses
with the real CLI, ports line up with Prometheus' targets, and every metric the
Grafana dashboard queries is one hookstream exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from hookstream.api.observability import metrics_middleware
from hookstream.cli import _parser
from hookstream.config import Settings
from hookstream.consumers.gates import EndpointGates
from hookstream.consumers.health_metrics import HealthCollector
from hookstream.consumers.lag import LagMonitor
from hookstream.consumers.metrics import WorkerMetrics
from hookstream.engine.gate import GateSettings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def hookstream_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("build") == "."}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def test_the_roles_are_api_worker_and_topics() -> None:
    assert set(hookstream_services()) == {"api", "worker", "topics"}


@pytest.mark.parametrize("name", ["api", "worker", "topics"])
def test_every_hookstream_variable_is_a_valid_setting(name: str) -> None:
    env = env_of(hookstream_services()[name])
    fields = {f"HOOKSTREAM_{f.upper()}" for f in Settings.__dataclass_fields__ if f[0] != "_"}
    used = {k for k in env if k.startswith("HOOKSTREAM_")}
    assert used <= fields, f"not settings: {sorted(used - fields)}"
    # Values as the container sees them: ${VAR:?...} substituted by compose.
    resolved = {k: ("x" * 32 if v.startswith("${") else v) for k, v in env.items()}
    Settings.load(resolved)  # raises ConfigError naming any bad value


@pytest.mark.parametrize("name", ["api", "worker", "topics"])
def test_every_command_parses_with_the_cli(name: str) -> None:
    command = hookstream_services()[name]["command"]
    args = _parser().parse_args(command)
    assert args.command == name


def test_the_dockerfile_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["hookstream"]' in dockerfile
    assert "FROM python:3.11" in dockerfile
    assert "COPY src ./src" in dockerfile


def test_ports_line_up_with_prometheus_targets() -> None:
    services = hookstream_services()
    api_command = services["api"]["command"]
    api_port = int(api_command[api_command.index("--port") + 1])
    assert services["api"]["ports"] == [f"{api_port}:{api_port}"]
    worker_port = int(env_of(services["worker"])["HOOKSTREAM_WORKER_METRICS_PORT"])
    assert str(worker_port) in [str(p) for p in services["worker"]["expose"]]
    assert env_of(services["worker"])["HOOKSTREAM_API_HOST"] == "0.0.0.0"

    prometheus = yaml.safe_load((ROOT / "config/prometheus.yml").read_text())
    targets = {
        sd["names"][0]: sd["port"]
        for job in prometheus["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    assert targets == {"worker": worker_port, "api": api_port}


def test_monitoring_files_mounted_by_compose_exist() -> None:
    for name in ("prometheus", "grafana"):
        for volume in compose()["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def exported_metric_names() -> set[str]:
    registry = CollectorRegistry(auto_describe=True)
    WorkerMetrics(registry)
    LagMonitor(Settings(), registry)

    registry.register(HealthCollector(EndpointGates(GateSettings()), 10))
    metrics_middleware(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads((ROOT / "config/grafana/dashboards/hookstream.json").read_text())
    exported = exported_metric_names()
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhookstream_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries hookstream metrics"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in (
        "throughput",
        "success",
        "latency",
        "retries",
        "dead letters",
        "lag",
        "state",
        "worst",
    ):
        assert topic in titles, topic


# Where each stateful image writes its data, and the setting that moves it:
# (image prefix, how to read the data path from the service, the image's default).
DATA_PATHS: dict[str, Callable[[dict[str, Any]], str]] = {
    "apache/kafka": lambda svc: env_of(svc).get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
    "redis": lambda svc: _flag(svc, "--dir", "/data"),
    "prom/prometheus": lambda svc: _flag(svc, "--storage.tsdb.path=", "/prometheus"),
    "grafana/grafana": lambda svc: env_of(svc).get("GF_PATHS_DATA", "/var/lib/grafana"),
}


def _flag(service: dict[str, Any], flag: str, default: str) -> str:
    command = [str(part) for part in service.get("command", [])]
    for i, part in enumerate(command):
        if flag.endswith("=") and part.startswith(flag):
            return part[len(flag) :]
        if part == flag and i + 1 < len(command):
            return command[i + 1]
    return default


def _named_volume_mounts(service: dict[str, Any]) -> list[str]:
    named = set(compose().get("volumes", {}))
    mounts = []
    for volume in service.get("volumes", []):
        source, _, target = str(volume).partition(":")
        if source in named:
            mounts.append(target.split(":")[0])
    return mounts


def test_every_stateful_service_keeps_its_data_on_a_named_volume() -> None:
    """Recreating a container must not lose Kafka's log (endpoints, keys, retries, DLQ),
    Redis' AOF, Prometheus' series or Grafana's state."""
    checked = []
    for name, service in compose()["services"].items():
        image = str(service.get("image", ""))
        for prefix, data_path in DATA_PATHS.items():
            if image.startswith(prefix + ":") or image == prefix:
                path = data_path(service)
                mounts = _named_volume_mounts(service)
                assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), (
                    f"{name} writes {path}, which is on no named volume ({mounts})"
                )
                checked.append(name)
    assert sorted(checked) == ["grafana", "kafka", "prometheus", "redis"]


def test_redis_persists_with_aof() -> None:
    assert "--appendonly" in compose()["services"]["redis"]["command"]


def test_kafka_has_a_listener_published_to_the_host() -> None:
    kafka = compose()["services"]["kafka"]
    env = env_of(kafka)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    external_port = listeners["EXTERNAL"].rsplit(":", 1)[1]
    assert advertised["EXTERNAL"] == f"localhost:{external_port}"
    assert f"{external_port}:{external_port}" in kafka["ports"]
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    # The services inside compose keep the internal listener.
    assert advertised["PLAINTEXT"] == env_of(hookstream_services()["api"])["HOOKSTREAM_BOOTSTRAP"]
