"""Clock skew through the running mesh (issue #17, scenario 8), every service a real process (``headwater up``).

After the demo loaded its days, one more event arrives for the first of those days (very late, but within the
allowed age) and one arrives three hours in the future. The late event is archived in its day, ingest rewrites
the day's marker, the loader reloads the day, and the warehouse holds every row of the day exactly once, the late
one included. The future one is refused after acceptance: it goes to bad rows with its reason, never to the day.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import pytest

from headwater.demo import run_demo
from services.ingest.badrows import read_bad_rows
from shared.aws import AwsClients
from tests.e2e.conftest import RunningMesh
from tests.e2e.test_mesh import mesh_settings
from tests.helpers import wait_until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(500)]


def test_a_late_event_is_reloaded_once_and_a_future_one_is_a_bad_row(mesh: RunningMesh) -> None:
    settings = mesh_settings(mesh)
    result = asyncio.run(run_demo(settings, events=60, meter_reads=20, step_timeout=120))
    assert result.ok, "the demo reported a failed hop (see the captured output)"
    day = result.plan.days[0]
    sent = [e["event_id"] for e in result.plan.beacons if e["event_time"].startswith(day.isoformat())]
    key = (mesh.data_dir / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    late = {"type": "impression", "ad_id": "ad-late", "user_id": "u-1", "event_id": f"late-{uuid.uuid4().hex}"}
    late["event_time"] = f"{day.isoformat()}T12:34:56Z"
    future = {"type": "click", "ad_id": "ad-late", "user_id": "u-1", "event_id": f"future-{uuid.uuid4().hex}"}
    future["event_time"] = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = httpx.post(
        f"{mesh.urls['ingest']}/v1/events", json={"events": [late, future]}, headers=headers, timeout=10
    )
    assert response.status_code in (200, 202), response.text
    assert response.json()["accepted"] == 2  # skew is only judged when the spool ships

    warehouse = mesh.data_dir / "loader" / "warehouse.duckdb"

    def _day_ids() -> list[str] | None:
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                rows = con.execute("SELECT event_id FROM ad_events WHERE dt = ?", [day.isoformat()]).fetchall()
        except duckdb.IOException:
            return None  # the loader holds the file for a moment; try again
        ids = [r[0] for r in rows]
        return ids if late["event_id"] in ids else None

    ids = wait_until_sync(_day_ids, timeout=180, interval=1.0, message="the late event never reached the warehouse")
    assert sorted(ids) == sorted([*sent, late["event_id"]])  # every row once, the late one included
    assert future["event_id"] not in ids

    async def _bad_rows() -> list[dict]:
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            listing = (await http.get(f"{mesh.urls['ingest']}/v1/bad-rows")).json()
        async with AwsClients(settings) as aws:
            s3 = await aws.get("s3")
            rows = []
            for entry in listing["objects"]:
                rows += await read_bad_rows(s3, bucket=settings.bucket("bad-rows"), key=entry["key"])
            return rows

    rows = wait_until_sync(
        lambda: [r for r in asyncio.run(_bad_rows()) if r["original"].get("event_id") == future["event_id"]],
        timeout=30,
        interval=1.0,
        message="the future event is not a bad row",
    )
    assert len(rows) == 1 and "after received_at" in rows[0]["reason"]
