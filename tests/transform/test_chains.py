"""Task chains: discovery, dependency-first idempotent runs with S3 targets, resume after a failure, status + DAG."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.transform.chains.testchains import hello_chain
from services.transform.settings import TransformSettings

PARAMS = {"name": "ada"}
DIGEST = hashlib.md5(b'{"fail":false,"name":"ada"}').hexdigest()


async def _status(client: httpx.AsyncClient, headers: dict[str, str], target: str) -> dict[str, Any]:
    response = await client.get("/api/chainstatus", params={"chain": target}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _fetch(url: str) -> Any:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).json()


async def _keys(s3: Any, prefix: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket="hw-chains", Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every HelloTask run."""
    seen: list[str] = []
    original = hello_chain.HelloTask.run

    async def _counting(self: Any, context: Any, params: Any, inputs: list[bytes]) -> bytes:
        seen.append(params.name)
        return await original(self, context, params, inputs)

    monkeypatch.setattr(hello_chain.HelloTask, "run", _counting)
    return seen


async def test_chains_are_discovered_from_the_chain_modules(
    app_client: httpx.AsyncClient, read_headers: dict[str, str]
) -> None:
    response = await app_client.get("/api/chains", headers=read_headers)

    types = {t["type"]: t for t in response.json()["types"]}
    assert {"advertising", "testchains"} <= set(types)
    hello = next(c for c in types["testchains"]["chains"] if c["name"] == "hello")
    assert [t["name"] for t in hello["tasks"]] == ["HelloTask", "ShoutTask"]
    assert hello["tasks"][1]["params_schema"]["properties"]["name"]["default"] == "world"


async def test_a_task_runs_after_its_requirement_and_writes_targets_by_params_digest(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    burst_worker: Callable[[], Any],
    runs: list[str],
) -> None:
    submitted = await app_client.post("/api/chains/testchains/hello/ShoutTask", json=PARAMS, headers=admin_headers)
    await burst_worker()

    assert submitted.status_code == 202
    target = f"chains/testchains/hello/ShoutTask/{DIGEST}/"
    assert submitted.json()["target"] == target
    assert submitted.json()["status_url"] == f"http://transform/api/chainstatus?chain={target}"
    assert await _keys(s3, "chains/testchains/hello/") == [
        f"chains/testchains/hello/HelloTask/{DIGEST}/_SUCCESS",
        f"chains/testchains/hello/HelloTask/{DIGEST}/log.txt",
        f"chains/testchains/hello/HelloTask/{DIGEST}/out.txt",
        f"chains/testchains/hello/HelloTask/{DIGEST}/params.json",
        f"{target}_SUCCESS",
        f"{target}log.txt",
        f"{target}out.json",
        f"{target}params.json",
    ]
    status = await _status(app_client, admin_headers, f"{target}out.json")
    assert status["job_status"] == "DONE" and status["expires_in"] == 600
    assert await _fetch(status["resource_url"]) == {"shout": "HELLO ADA"}
    assert {(n["task"], n["state"]) for n in status["dag"]["nodes"]} == {("ShoutTask", "DONE"), ("HelloTask", "DONE")}
    assert status["dag"]["edges"] == [{"from": f"chains/testchains/hello/HelloTask/{DIGEST}/", "to": target}]
    assert runs == ["ada"]

    await app_client.post("/api/chains/testchains/hello/ShoutTask", json=PARAMS, headers=admin_headers)
    await burst_worker()
    assert runs == ["ada"]  # complete targets are never run again


async def test_a_failed_chain_resumes_at_the_failed_task(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    burst_worker: Callable[[], Any],
    runs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def _broken(self: Any, context: Any, params: Any, inputs: list[bytes]) -> bytes:
        raise RuntimeError("bug in ShoutTask")

    fixed = hello_chain.ShoutTask.run
    monkeypatch.setattr(hello_chain.ShoutTask, "run", _broken)
    await app_client.post("/api/chains/testchains/hello/ShoutTask", json=PARAMS, headers=admin_headers)
    await burst_worker()
    target = f"chains/testchains/hello/ShoutTask/{DIGEST}/"
    failed = await _status(app_client, admin_headers, target)
    assert failed["job_status"] == "FAILED" and "bug in ShoutTask" in failed["error"]
    assert {(n["task"], n["state"]) for n in failed["dag"]["nodes"]} == {("ShoutTask", "FAILED"), ("HelloTask", "DONE")}

    monkeypatch.setattr(hello_chain.ShoutTask, "run", fixed)  # the bug is fixed
    await app_client.post("/api/chains/testchains/hello/ShoutTask", json=PARAMS, headers=admin_headers)
    await burst_worker()

    assert (await _status(app_client, admin_headers, target))["job_status"] == "DONE"
    assert runs == ["ada"]  # HelloTask ran once, before the failure


async def test_the_ctr_report_rolls_up_daily_advertising_views(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    for day, (impressions, clicks) in ((date(2026, 11, 23), (10, 1)), (date(2026, 11, 24), (30, 3))):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"ad_id": ["ad-1"], "impressions": [impressions], "clicks": [clicks]}), buffer)
        await s3.put_object(
            Bucket=settings.bucket("curated"),
            Body=buffer.getvalue(),
            Key=f"_views/advertising/ad_events/v1/dt={day.isoformat()}/part-00000.parquet",
        )

    submitted = await app_client.post(
        "/api/chains/advertising/daily_traffic/CtrReportTask",
        json={"start": "2026-11-23", "end": "2026-11-24"},
        headers=admin_headers,
    )
    await burst_worker()

    status = await _status(app_client, admin_headers, submitted.json()["target"])
    assert status["job_status"] == "DONE"
    assert (await _fetch(status["resource_url"]))["ads"] == {"ad-1": {"impressions": 40, "clicks": 4, "ctr": 0.1}}
    assert len(status["dag"]["nodes"]) == 3


async def test_bad_params_unknown_tasks_and_unknown_targets_are_refused(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    bad = await app_client.post("/api/chains/testchains/hello/ShoutTask", json={"nam": "x"}, headers=admin_headers)
    unknown = await app_client.post("/api/chains/testchains/hello/NopeTask", json={}, headers=admin_headers)
    target = await app_client.get("/api/chainstatus", params={"chain": "chains/a/b/CTask/0123/"}, headers=admin_headers)

    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "nam"
    assert unknown.status_code == 404
    assert target.status_code == 404


async def test_the_dag_page_moved_to_the_console(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/ui/chains.html")

    assert response.status_code == 308
    assert response.headers["location"].endswith("/chains")


async def test_v1_chain_routes_answer_with_v1_urls_and_the_seed_paths_stay_out_of_the_spec(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    burst_worker: Callable[[], Any],
) -> None:
    index = (await app_client.get("/v1/chains", headers=admin_headers)).json()
    testchains = next(t for t in index["types"] if t["type"] == "testchains")["chains"]
    hello = next(c for c in testchains if c["name"] == "hello")
    submitted = await app_client.post(hello["tasks"][1]["url"], json=PARAMS, headers=admin_headers)
    await burst_worker()
    target = f"chains/testchains/hello/ShoutTask/{DIGEST}/"
    status = await app_client.get("/v1/chains/status", params={"chain": target}, headers=admin_headers)
    paths = app_client.app.openapi()["paths"]  # type: ignore[attr-defined]

    assert hello["tasks"][1]["url"] == "/v1/chains/testchains/hello/ShoutTask"
    assert submitted.status_code == 202
    assert submitted.json()["status_url"] == f"http://transform/v1/chains/status?chain={target}"
    assert status.json()["job_status"] == "DONE"
    assert {"/v1/chains", "/v1/chains/{type_name}/{chain}/{task}", "/v1/chains/status"} <= set(paths)
    assert [path for path in paths if path.startswith("/api/")] == []
    assert "`GET /api/chainstatus`" in paths["/v1/chains/status"]["get"]["description"]
