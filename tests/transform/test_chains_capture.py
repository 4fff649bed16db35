"""A task's log.txt holds what it printed and logged (structlog and ``logging``), once each, with logging
configured as the worker configures it; concurrent tasks do not mix their lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from services.transform.chains.capture import captured
from services.transform.settings import TransformSettings
from shared.logging import configure_logging, get_logger
from tests.transform.chain_helpers import abc_params, background_worker, fast, settled, submit


def _json_lines(text: str) -> list[dict[str, object]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


async def test_log_txt_holds_the_structlog_and_logging_lines_the_task_emitted(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    params = abc_params(tmp_path, fail_file=str(broken))
    # The worker configures structlog at start-up (JSON to stderr, as in production).
    async with background_worker(fast(settings).model_copy(update={"log_json": True})):
        submitted = await submit(app_client, admin_headers, "BTask", params)
        failed = await settled(app_client, admin_headers, submitted["target"])
        detail = (
            await app_client.get("/v1/chains/task", params={"chain": submitted["target"]}, headers=admin_headers)
        ).json()

    assert failed["job_status"] == "FAILED"
    log_text = detail["log"]
    events = [e for e in _json_lines(log_text) if e.get("event") == "b_started"]
    assert len(events) == 1, log_text
    assert events[0]["run"] == tmp_path.name and events[0]["input_bytes"] == 1
    assert events[0]["service"] == "transform" and events[0]["level"] == "info"
    assert log_text.count("B reads 1 bytes") == 1
    assert log_text.count("B starts on b'a'") == 1
    assert "RuntimeError: B is broken" in log_text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging and structlog configuration back as they were after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    saved = {**config, "processors": list(config["processors"])}
    yield
    root.handlers, root.level = handlers, level
    structlog.configure(**saved)


async def test_concurrent_tasks_keep_their_own_lines_and_the_service_stream_still_gets_them(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with captured([]):  # the proxies are in place before logging is configured (a second worker in a process)
        pass
    service_stream = io.StringIO()
    monkeypatch.setattr(sys.stderr, "_real", service_stream)
    configure_logging("transform", "INFO", json=True)  # its sinks are now our stderr proxy

    async def _task(name: str, gate: asyncio.Event, other: asyncio.Event) -> list[str]:
        lines: list[str] = []
        with captured(lines):
            get_logger("chain.test").info("step", task=name, part=1)
            gate.set()
            await other.wait()  # both tasks are inside their capture at once
            logging.getLogger("chain.test").warning("std %s", name)
            print(f"printed by {name}")
        return lines

    first_in, second_in = asyncio.Event(), asyncio.Event()
    one, two = await asyncio.gather(_task("one", first_in, second_in), _task("two", second_in, first_in))
    get_logger("chain.test").info("outside", task="none")

    for name, lines in (("one", one), ("two", two)):
        text = "".join(lines)
        steps = [e for e in _json_lines(text) if e.get("event") == "step"]
        assert [e["task"] for e in steps] == [name], text
        assert text.count(f"std {name}") == 1 and text.count(f"printed by {name}") == 1
        assert "outside" not in text and ("one" if name == "two" else "two") not in text
    shown = service_stream.getvalue()
    assert [e["task"] for e in _json_lines(shown) if e.get("event") == "step"] == ["one", "two"]
    assert "std one" in shown and "std two" in shown and '"event": "outside"' in shown
    assert "printed by" not in shown  # prints belong to the task alone
