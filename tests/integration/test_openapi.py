"""Schemathesis against the served spec: no 5xx, and no response that breaks it.

The API runs on a real socket over the embedded stack; `st run` (in the same
virtualenv) reads /v1/openapi.json, generates requests from the very schemas
that validate them, and checks every response. Bounded: a fixed seed, a few
examples per operation, no stateful phase. Path ids are those of real objects
created first (config below), so the endpoint operations run their core logic;
the test-send operation is left out, so nothing is sent anywhere (test_ssrf.py
covers it).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.config import Settings
from tests.conftest import ADMIN_KEY, AUTH, MappedResolver

pytestmark = pytest.mark.integration

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    )
)
RUN_TIMEOUT_S = 600
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # where tests.integration imports from


async def test_schemathesis_finds_no_5xx_and_no_response_off_spec(
    settings: Settings, tmp_path: Path
) -> None:
    app = create_app(settings, resolver=MappedResolver({}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        base = str(client.make_url("")).rstrip("/")
        auth = AUTH
        ids = []
        for _ in range(2):  # one may be deleted early in the run
            created = await client.post(
                "/v1/endpoints", json={"url": "http://127.0.0.1:9/", "tenant": "acme"}, headers=auth
            )
            assert created.status == 201
            ids.append((await created.json())["id"])
        event_type = {"name": "order.placed", "schema": {"type": "object"}}
        assert (await client.post("/v1/event-types", json=event_type, headers=auth)).status == 201
        (tmp_path / "schemathesis.toml").write_text(
            "[parameters]\n"
            f'"path.endpoint_id" = "{ids[0]}"\n'
            '"path.tenant_id" = "acme"\n'
            '"path.name" = "order.placed"\n'
        )
        st = Path(sys.executable).with_name("st")
        counts = tmp_path / "hook-counts"
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
            "HOOKSTREAM_HOOK_COUNTS": str(counts),
            "PYTHONPATH": PROJECT_ROOT,
        }
        process = await asyncio.create_subprocess_exec(
            str(st),
            "run",
            f"{base}/v1/openapi.json",
            "--url",
            base,
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--seed",
            "20261123",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--exclude-operation-id",
            "test_endpoint",
            "--report-dir",
            str(tmp_path),
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    text: Any = output.decode(errors="replace")
    assert process.returncode == 0, text[-20_000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", text)
    assert cases is not None, text[-3000:]
    generated, passed = map(int, cases.groups())
    assert generated >= 1000
    assert passed == generated
    sent = counts.read_text().split()
    assert sent.count("deep") >= 20, sent.count("deep")
    assert sent.count("non-ascii-header") >= 50, sent.count("non-ascii-header")
