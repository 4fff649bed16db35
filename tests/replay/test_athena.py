"""`POST /v1/query` on Athena (`query_engine: athena`).

Against the moto server: what Headwater sends (the SQL, the catalog database, the workgroup and the result
location, read back with GetQueryExecution) and the typed rows of a result seeded through moto's
``/moto-api/static/athena/query-results`` (moto runs no SQL: an unseeded query has no rows).

moto answers GetQueryResults in one page whatever MaxResults says, so the paging tests use ``PagingAthena``, an
in-process stand-in that pages like Athena (MaxResults, NextToken, the header row on the first page only), and
can fail or never finish a query: those are the parts of the protocol the emulator cannot show.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from services.replay.athena import start_athena_query
from services.replay.models import QueryRequest
from services.replay.query import QuerySlots
from services.replay.sandbox import QueryRefused
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.bootstrap_bi import ensure_athena_workgroup

SQL = "SELECT ad_id, impressions, ctr, dt, last_seen FROM ad_events WHERE dt = DATE '2026-11-24' ORDER BY ad_id"
COLUMNS = [
    {"Name": "ad_id", "Type": "varchar"},
    {"Name": "impressions", "Type": "bigint"},
    {"Name": "ctr", "Type": "double"},
    {"Name": "dt", "Type": "date"},
    {"Name": "last_seen", "Type": "timestamp"},
]


def _row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


@pytest.fixture
async def settings(settings: ReplaySettings) -> ReplaySettings:
    athena = settings.model_copy(update={"query_engine": "athena", "athena_poll_s": 0.05})
    async with AwsClients(athena) as clients:  # bootstrap's workgroup: moto refuses queries in a missing one
        await ensure_athena_workgroup(await clients.get("athena"), athena)
    return athena


async def _seed(endpoint: str, settings: ReplaySettings, rows: list[dict[str, Any]]) -> None:
    body = {"region": settings.aws_region, "results": [{"rows": rows, "column_info": COLUMNS}]}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{endpoint}/moto-api/static/athena/query-results", json=body)
    assert response.status_code == 201


async def test_the_query_is_sent_with_the_catalog_database_and_seeded_rows_come_back_typed(
    client: httpx.AsyncClient, aws: Any, settings: ReplaySettings, aws_endpoint: str
) -> None:
    header = _row("ad_id", "impressions", "ctr", "dt", "last_seen")
    await _seed(
        aws_endpoint,
        settings,
        [
            header,
            _row("ad-1", "120", "0.025", "2026-11-24", "2026-11-24 10:00:00.123"),
            _row("ad-2", "7", None, "2026-11-24", "2026-11-24 23:59:59.000"),
        ],
    )

    response = await client.post("/v1/query", json={"sql": SQL})

    assert response.status_code == 200, response.text
    assert [orjson.loads(line) for line in response.text.splitlines()] == [
        {
            "ad_id": "ad-1",
            "impressions": 120,
            "ctr": 0.025,
            "dt": "2026-11-24",
            "last_seen": "2026-11-24T10:00:00.123000",
        },
        {"ad_id": "ad-2", "impressions": 7, "ctr": None, "dt": "2026-11-24", "last_seen": "2026-11-24T23:59:59"},
    ]
    athena = await aws.get("athena")
    [query_id] = (await athena.list_query_executions(WorkGroup=f"{settings.resource_prefix}-replay"))[
        "QueryExecutionIds"
    ]
    sent = (await athena.get_query_execution(QueryExecutionId=query_id))["QueryExecution"]
    assert sent["Query"] == SQL
    assert sent["QueryExecutionContext"] == {
        "Database": f"{settings.resource_prefix}_curated",
        "Catalog": "AwsDataCatalog",
    }
    assert sent["WorkGroup"] == f"{settings.resource_prefix}-replay"
    # moto, like Athena, reports the result object under the location that was sent.
    assert sent["ResultConfiguration"]["OutputLocation"].startswith(f"s3://{settings.resource_prefix}-replay/_athena/")


async def test_an_arrow_answer_carries_athena_types(
    client: httpx.AsyncClient, settings: ReplaySettings, aws_endpoint: str
) -> None:
    await _seed(aws_endpoint, settings, [_row("ad-1", "3", "0.5", "2026-11-24", "2026-11-24 10:00:00.000")])

    response = await client.post("/v1/query", json={"sql": SQL, "format": "arrow"})

    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.schema.types == [pa.string(), pa.int64(), pa.float64(), pa.date32(), pa.timestamp("us")]
    assert table.column("impressions").to_pylist() == [3]  # no header row in the first page: nothing skipped


async def test_a_statement_that_is_not_one_select_never_reaches_athena(
    client: httpx.AsyncClient, aws: Any, settings: ReplaySettings
) -> None:
    response = await client.post("/v1/query", json={"sql": "DROP TABLE ad_events_v1"})

    assert response.status_code == 400 and response.json()["error"]["code"] == "query_refused"
    athena = await aws.get("athena")
    assert (await athena.list_query_executions())["QueryExecutionIds"] == []


class PagingAthena:
    """Athena's result protocol in process: pages of ``MaxResults`` rows, the header first, NextToken between."""

    def __init__(self, rows: int, *, states: list[str] | None = None, reason: str = "") -> None:
        self.rows = [_row("n", "label")] + [_row(str(i), f"row-{i}") for i in range(rows)]
        self.states = states or ["QUEUED", "RUNNING", "SUCCEEDED"]
        self.reason = reason
        self.started: list[dict[str, Any]] = []
        self.result_calls: list[dict[str, Any]] = []
        self.stopped: list[str] = []

    async def start_query_execution(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        return {"QueryExecutionId": "q-1"}

    async def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"QueryExecution": {"Status": {"State": state, "StateChangeReason": self.reason}}}

    async def stop_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        self.stopped.append(QueryExecutionId)
        return {}

    async def get_query_results(self, QueryExecutionId: str, MaxResults: int, NextToken: str | None = None) -> dict:
        self.result_calls.append({"MaxResults": MaxResults, "NextToken": NextToken})
        start = int(NextToken or 0)
        page = self.rows[start : start + MaxResults]
        answer: dict[str, Any] = {
            "ResultSet": {
                "Rows": page,
                "ResultSetMetadata": {
                    "ColumnInfo": [{"Name": "n", "Type": "integer"}, {"Name": "label", "Type": "varchar"}]
                },
            }
        }
        if start + MaxResults < len(self.rows):
            answer["NextToken"] = str(start + MaxResults)
        return answer


class _Aws:
    def __init__(self, athena: PagingAthena) -> None:
        self.athena = athena

    async def get(self, service: str) -> PagingAthena:
        assert service == "athena"
        return self.athena


async def _collect(settings: ReplaySettings, athena: PagingAthena, **request: Any) -> list[dict[str, Any]]:
    stream = await start_athena_query(
        settings=settings,
        aws=_Aws(athena),  # type: ignore[arg-type]
        request=QueryRequest(sql="SELECT n, label FROM t", **request),
        slots=QuerySlots(1),
    )
    body = b"".join([chunk async for chunk in stream.chunks()])
    return [orjson.loads(line) for line in body.splitlines()]


async def test_results_are_paged_with_next_token_until_the_last_page(settings: ReplaySettings) -> None:
    settings = settings.model_copy(update={"athena_page_rows": 1000})
    athena = PagingAthena(2500)

    rows = await _collect(settings, athena)

    assert [r["n"] for r in rows] == list(range(2500)) and rows[0] == {"n": 0, "label": "row-0"}
    assert [c["NextToken"] for c in athena.result_calls] == [None, "1000", "2000"]
    assert {c["MaxResults"] for c in athena.result_calls} == {1000}
    assert athena.started[0]["QueryExecutionContext"]["Database"] == f"{settings.resource_prefix}_curated"


async def test_a_row_limit_stops_fetching_pages_and_says_the_result_was_cut(settings: ReplaySettings) -> None:
    settings = settings.model_copy(update={"athena_page_rows": 100})
    athena = PagingAthena(5000)

    rows = await _collect(settings, athena, max_rows=150)

    assert [r["n"] for r in rows[:-1]] == list(range(150))
    assert rows[-1] == {"_truncated": True, "reason": "max_rows", "rows": 150}
    assert len(athena.result_calls) <= 3  # 150 rows and one page to tell a cut from the end, never all 51 pages


async def test_a_failed_athena_query_is_a_400_with_athenas_reason(settings: ReplaySettings) -> None:
    athena = PagingAthena(1, states=["QUEUED", "FAILED"], reason="TABLE_NOT_FOUND: line 1:15: Table 'x' does not exist")

    with pytest.raises(QueryRefused, match="TABLE_NOT_FOUND"):
        await _collect(settings, athena)
    assert athena.result_calls == []


async def test_a_query_past_its_time_limit_is_stopped_on_athena(settings: ReplaySettings) -> None:
    athena = PagingAthena(1, states=["RUNNING"])
    slots = QuerySlots(1)

    with pytest.raises(QueryRefused, match="time limit"):
        await asyncio.wait_for(
            start_athena_query(
                settings=settings,
                aws=_Aws(athena),  # type: ignore[arg-type]
                request=QueryRequest(sql="SELECT 1", timeout_s=0.3),
                slots=slots,
            ),
            timeout=10,
        )
    assert athena.stopped == ["q-1"] and slots.in_use == 0
