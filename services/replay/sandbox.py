"""A read-only DuckDB sandbox over the archive mirror, curated tables and the live tail.

Views: ``raw_events`` (archived gzip JSON lines, hive-partitioned on dt/hour), ``live_events`` (the Kinesis
tail), ``all_events`` (both, de-duplicated by event id, the archived copy winning) and one view per mirrored
curated table (latest version), plus ``advertising_<table>`` for the advertising views.
Only a single SELECT is accepted; file access is limited to the mirror and configuration is locked.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from services.replay.archive import TimeWindow
from shared.contracts import ADVERTISING_VIEW, VIEWS_PREFIX, RawRecord
from shared.errors import ApiError

EVENT_VIEWS = ("raw_events", "live_events", "all_events")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class QueryRefused(ApiError):
    """The SQL is not a single read-only SELECT, or does not compile."""

    status_code = 400
    code = "query_refused"


# The raw record's fields (contract 1) as columns; ``raw`` (a meter's device payload) stays inside ``record``.
_FIELDS = tuple(name for name in RawRecord.model_fields if name != "raw")
# The extracted event time (DuckDB lists are 1-based), from which live records get their dt/hour.
_EVENT_TIME = f"x[{_FIELDS.index('event_time') + 1}]"
_TYPED = {
    "event_time": "TRY_CAST({} AS TIMESTAMP)",
    "received_at": "TRY_CAST({} AS TIMESTAMP)",
    "properties": "CAST({} AS JSON)",
    "demand_kw": "TRY_CAST({} AS DOUBLE)",
    "summation_delivered_kwh": "TRY_CAST({} AS DOUBLE)",
    "summation_received_kwh": "TRY_CAST({} AS DOUBLE)",
}


def _event_projection(source: str, *, sequence: str, origin: str, dt: str, hour: str) -> str:
    # One JSON parse per line extracts every field (DuckDB drops the columns a query does not use);
    # lines that are not JSON objects are skipped. ``record`` is the original line, byte for byte (VARCHAR, so
    # replaying it costs no second parse; JSON functions such as record->>'x' accept it as is).
    paths = ", ".join(f"'{name}'" for name in _FIELDS)
    columns = ",\n            ".join(
        _TYPED.get(name, "{}").format(f"x[{i}]") + f" AS {name}" for i, name in enumerate(_FIELDS, start=1)
    )
    return f"""
        SELECT
            {columns},
            line AS record,
            {sequence} AS sequence_number,
            '{origin}' AS origin,
            {dt} AS dt,
            {hour} AS hour
        FROM (
            SELECT json_extract_string(line, [{paths}]) AS x, *
            FROM (SELECT * FROM {source} WHERE json_valid(line) AND starts_with(ltrim(line), '{{'))
        )
    """


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _raw_lines_sql(raw_root: Path, sources: list[str] | None = None, window: TimeWindow | None = None) -> str:
    """Return the SELECT of raw archive lines, limited to ``sources`` and the partitions ``window`` touches."""
    dirs = ["*"] if not sources else [src for src in sources if (raw_root / src).is_dir()]
    # The raw layout of shared.contracts (contract 1) as a glob: <source>/dt=YYYY-MM-DD/hour=HH/*.json.gz.
    patterns = [raw_root / d / "dt=*" / "hour=*" / "*.json.gz" for d in dirs]
    if not any(any(raw_root.glob(str(p.relative_to(raw_root)))) for p in patterns):
        return "SELECT NULL::VARCHAR AS line, NULL::DATE AS dt, NULL::INTEGER AS hour WHERE false"
    files = ", ".join(f"'{_sql_path(p)}'" for p in patterns)
    where = []
    # Partition filters only (dt, hour): DuckDB evaluates them per file and skips the files outside.
    if window is not None and window.start is not None:
        where.append(f"dt + to_hours(hour + 1) > {_timestamp_literal(window.start)}")
    if window is not None and window.end is not None:
        where.append(f"dt + to_hours(hour) < {_timestamp_literal(window.end)}")
    return (
        f"SELECT line, dt, hour FROM read_csv([{files}], columns={{'line': 'VARCHAR'}}, delim='\\x1e', quote='',"
        " escape='', header=false, compression='gzip', hive_partitioning=true,"
        " hive_types={'dt': 'DATE', 'hour': 'INTEGER'}, auto_detect=false)"
        + (f" WHERE {' AND '.join(where)}" if where else "")
    )


def _timestamp_literal(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"TIMESTAMP '{aware.astimezone(UTC).replace(tzinfo=None).isoformat(sep=' ')}'"


def check_single_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Return ``sql`` without a trailing semicolon if it parses as exactly one SELECT, else raise QueryRefused."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"exactly one statement is allowed, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryRefused(f"only SELECT is allowed, got {statements[0].type.name}")
    return sql.strip().rstrip(";").strip()


def parse_check(sql: str) -> str:
    """Check that ``sql`` parses as one SELECT (no views needed: nothing is bound or run)."""
    con = duckdb.connect(":memory:")
    try:
        return check_single_select(con, sql)
    finally:
        con.close()


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox: DuckDB memory, and spill to ``temp_parent`` (none when unset)."""

    memory_limit: str = "512MB"
    temp_parent: Path | None = None
    max_temp_size: str = "2GB"


class Sandbox:
    """One DuckDB connection set up with the views; use once, then close."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        raw_bucket: str,
        curated_bucket: str,
        live: pa.Table | None,
        sources: list[str] | None = None,
        window: TimeWindow | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        limits = limits or SandboxLimits()
        config: dict[str, str | int] = {"threads": 2, "memory_limit": limits.memory_limit}
        self._temp_dir: Path | None = None
        if limits.temp_parent is not None:
            # Spill goes to a folder of its own, bounded, and removed with the sandbox.
            self._temp_dir = limits.temp_parent / uuid.uuid4().hex
            self._temp_dir.mkdir(parents=True, mode=0o700)
            config["temp_directory"] = str(self._temp_dir)
            config["max_temp_directory_size"] = limits.max_temp_size
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute("SET TimeZone = 'UTC'")
        raw_root = cache_dir / raw_bucket
        self.con.execute(f"CREATE VIEW _raw_lines AS {_raw_lines_sql(raw_root, sources, window)}")
        self.con.execute(
            "CREATE VIEW raw_events AS "
            + _event_projection("_raw_lines", sequence="NULL::VARCHAR", origin="archive", dt="dt", hour="hour")
        )
        live_table = live if live is not None else pa.table({"line": pa.array([], pa.string())})
        if "sequence_number" not in live_table.column_names:
            nulls = pa.array([None] * live_table.num_rows, pa.string())
            live_table = live_table.append_column("sequence_number", nulls)
        self.con.register("_live_lines_arrow", live_table.select(["line", "sequence_number"]))
        self.con.execute(
            "CREATE VIEW live_events AS "
            + _event_projection(
                "_live_lines_arrow",
                sequence="sequence_number",
                origin="live",
                dt=f"CAST(TRY_CAST({_EVENT_TIME} AS TIMESTAMP) AS DATE)",
                hour=f"CAST(hour(TRY_CAST({_EVENT_TIME} AS TIMESTAMP)) AS INTEGER)",
            )
        )
        self.con.execute(
            """CREATE VIEW all_events AS
            SELECT * FROM (SELECT * FROM raw_events UNION ALL SELECT * FROM live_events)
            QUALIFY row_number() OVER (
                PARTITION BY event_id
                ORDER BY (origin = 'archive') DESC, received_at, lpad(sequence_number, 64, '0')
            ) = 1"""
        )
        self._curated_views(cache_dir / curated_bucket)
        self.con.execute(f"SET allowed_directories = ['{_sql_path(cache_dir)}/']")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def _curated_views(self, root: Path) -> None:
        if not root.exists():
            return
        for table_dir in sorted(p for p in root.iterdir() if p.is_dir() and _IDENT.match(p.name)):
            self._latest_version_view(table_dir, table_dir.name)
        advertising = root / VIEWS_PREFIX / ADVERTISING_VIEW
        if advertising.exists():
            for table_dir in sorted(p for p in advertising.iterdir() if p.is_dir() and _IDENT.match(p.name)):
                self._latest_version_view(table_dir, f"advertising_{table_dir.name}")

    def _latest_version_view(self, table_dir: Path, view: str) -> None:
        versions = [p for p in table_dir.glob("v*") if p.name[1:].isdigit() and any(p.glob("dt=*/*.parquet"))]
        if not versions or view in EVENT_VIEWS:
            return
        latest = max(versions, key=lambda p: int(p.name[1:]))
        pattern = _sql_path(latest / "dt=*" / "*.parquet")
        # dt comes from the path (curated files leave it to their dt= directory)
        source = f"read_parquet('{pattern}', union_by_name=true, hive_partitioning=true)"
        self.con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM {source}')

    def check_select(self, sql: str) -> str:
        """Return ``sql`` without a trailing semicolon if it is exactly one SELECT, else raise QueryRefused."""
        return check_single_select(self.con, sql)

    def relation_columns(self, sql: str) -> list[str]:
        """Return the column names ``sql`` produces (binds without running)."""
        try:
            return list(self.con.sql(sql).columns)
        except duckdb.Error as exc:
            raise QueryRefused(f"query does not compile: {exc}") from None

    def reader(self, sql: str, *, timeout_s: float, batch_size: int = 2048) -> tuple[pa.RecordBatchReader, list[str]]:
        """Start a checked SELECT, interrupted after ``timeout_s``; return its batches and its JSON-typed columns.

        Errors while binding or starting become QueryRefused (400).
        """
        timer = threading.Timer(timeout_s, self.con.interrupt)
        timer.daemon = True
        timer.start()
        self._timer = timer
        try:
            relation = self.con.sql(sql)
            json_columns = [n for n, t in zip(relation.columns, relation.types, strict=True) if str(t) == "JSON"]
            return relation.to_arrow_reader(batch_size), json_columns
        except duckdb.InterruptException:
            raise QueryRefused(f"query exceeded the time limit of {timeout_s:g}s") from None
        except duckdb.Error as exc:
            timer.cancel()
            raise QueryRefused(f"query failed: {exc}") from None

    @staticmethod
    def batches_from(reader: pa.RecordBatchReader, *, max_rows: int) -> Iterator[pa.RecordBatch]:
        """Yield batches of ``reader`` until ``max_rows`` rows were produced."""
        produced = 0
        for batch in reader:
            if produced + batch.num_rows > max_rows:
                batch = batch.slice(0, max_rows - produced)
            produced += batch.num_rows
            if batch.num_rows:
                yield batch
            if produced >= max_rows:
                break

    def interrupt(self) -> None:
        """Stop the running statement from any thread (its caller sees duckdb.InterruptException)."""
        self.con.interrupt()

    def close(self) -> None:
        """Stop the timer, close the connection and remove the spill folder."""
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
        self.con.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
