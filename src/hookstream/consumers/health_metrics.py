"""Endpoint health as Prometheus metrics, with a fixed bound on series.

Per-endpoint series exist only for the `metrics_endpoint_series` worst
endpoints this worker owns (lowest score first, then open circuits), so a
deployment with 100,000 endpoints still exports at most that many series per
metric per worker. Every endpoint is counted in the per-state totals, and
`hookstream_endpoint_series_omitted` says how many were left out; the health
API answers for any single endpoint.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hookstream.consumers.gates import EndpointGates
from hookstream.engine.circuit import CircuitState
from hookstream.engine.health import HealthState


class HealthCollector(Collector):
    """Reads the endpoint gates at scrape time; holds no series of its own."""

    def __init__(
        self, gates: EndpointGates, series: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._gates = gates
        self._series = series
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges for one scrape."""
        now = self._clock()
        rows = []
        states: Counter[str] = Counter({state.value: 0 for state in HealthState})
        open_circuits = 0
        for gate in self._gates.all():
            is_open = gate.circuit.state is not CircuitState.CLOSED
            state = gate.state(now, disabled=self._gates.is_disabled(gate.endpoint_id))
            states[state.value] += 1
            open_circuits += is_open
            rows.append((gate.window.score(now), not is_open, gate.endpoint_id, is_open))
        rows.sort()
        shown = rows[: self._series]

        by_state = GaugeMetricFamily(
            "hookstream_endpoints", "Endpoints this worker owns, by health state", labels=["state"]
        )
        for state_name, count in sorted(states.items()):
            by_state.add_metric([state_name], count)
        yield by_state
        yield GaugeMetricFamily(
            "hookstream_circuit_open", "Endpoints whose circuit is open or half-open", open_circuits
        )
        score = GaugeMetricFamily(
            "hookstream_endpoint_health_score",
            "Health score 0..1 of the worst endpoints",
            labels=["endpoint_id"],
        )
        circuit = GaugeMetricFamily(
            "hookstream_endpoint_circuit_open",
            "1 while the endpoint's circuit is not closed (worst endpoints only)",
            labels=["endpoint_id"],
        )
        for value, _, endpoint_id, is_open in shown:
            score.add_metric([endpoint_id], value)
            circuit.add_metric([endpoint_id], 1.0 if is_open else 0.0)
        yield score
        yield circuit
        yield GaugeMetricFamily(
            "hookstream_endpoint_series_omitted",
            "Endpoints left out of the per-endpoint series by the bound",
            len(rows) - len(shown),
        )
