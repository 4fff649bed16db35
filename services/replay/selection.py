"""Turn a replay request into one ordered SELECT producing (_key, _data, _event_time, _sequence) rows.

Order is total and deterministic (event time, sequence, key, payload), so a preview equals the head of the
real run and a resumed job can skip exactly the rows it already emitted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.replay.archive import TimeWindow
from services.replay.models import ReplayCreate, Selection
from services.replay.sandbox import Sandbox, parse_check


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return _literal(aware.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "))


def selection_sql(selection: Selection) -> str:
    """Return the SELECT for a structured selection (partition columns repeat the time bounds for pruning)."""
    where: list[str] = []
    if selection.sources:
        where.append(f"source IN ({', '.join(_literal(s) for s in selection.sources)})")
    if selection.start is not None:
        where.append(f"event_time >= {_ts(selection.start)}")
        where.append(f"dt >= CAST({_ts(selection.start)} AS DATE)")
    if selection.end is not None:
        where.append(f"event_time < {_ts(selection.end)}")
        where.append(f"dt <= CAST({_ts(selection.end)} AS DATE)")
    if selection.event_types:
        where.append(f"type IN ({', '.join(_literal(t) for t in selection.event_types)})")
    if selection.ad_ids:
        where.append(f"ad_id IN ({', '.join(_literal(a) for a in selection.ad_ids)})")
    if selection.where:
        where.append(f"({selection.where})")
    clause = " AND ".join(where) or "true"
    return f"SELECT * FROM {selection.view} WHERE {clause}"


def base_sql(request: ReplayCreate) -> str:
    """Return the user-level SELECT of a request (the query form, or the structured selection)."""
    if request.query is not None:
        return request.query
    return selection_sql(request.selection or Selection())


def mirror_scope(request: ReplayCreate) -> tuple[list[str] | None, TimeWindow | None]:
    """Return which raw sources and time window the request can read (None: everything)."""
    if request.query is not None or request.selection is None:
        return None, None
    return request.selection.sources, TimeWindow(request.selection.start, request.selection.end)


def precheck(request: ReplayCreate) -> None:
    """Refuse (400) a request whose SQL parts are not one SELECT, before anything is queued."""
    inner = parse_check(base_sql(request))
    parse_check(f"SELECT ({request.key}) FROM ({inner}) AS q")


def emission_sql(sandbox: Sandbox, request: ReplayCreate, *, limit: int | None = None) -> str:
    """Return the checked, ordered SELECT of records to emit (compacted when asked)."""
    inner = sandbox.check_select(base_sql(request))
    columns = set(sandbox.relation_columns(inner))
    # Sub-expressions the user controls are validated as part of one SELECT: a stray ';' makes two statements.
    sandbox.check_select(f"SELECT ({request.key}) FROM ({inner}) AS q")
    payload = "CAST(record AS VARCHAR)" if "record" in columns else "CAST(to_json(q) AS VARCHAR)"
    # With a record column, the original event time is read from the record when annotating.
    if "event_time" in columns and "record" not in columns:
        event_time = "CAST(event_time AS VARCHAR)"
    else:
        event_time = "NULL::VARCHAR"
    sort_time = "TRY_CAST(event_time AS TIMESTAMP)" if "event_time" in columns else "NULL::TIMESTAMP"
    sequence = "CAST(sequence_number AS VARCHAR)" if "sequence_number" in columns else "NULL::VARCHAR"
    keyed = f"""
        SELECT CAST(({request.key}) AS VARCHAR) AS _key, {payload} AS _data, {event_time} AS _event_time,
               {sequence} AS _sequence, {sort_time} AS _t
        FROM ({inner}) AS q
    """
    # Sequence numbers are decimal strings without leading zeros: (length, text) orders them numerically.
    seq_order = "coalesce(length(_sequence), 0), coalesce(_sequence, '')"
    order = f"_t NULLS FIRST, {seq_order}, _key, _data"
    if request.compact:
        # The newest record per key by (event time, sequence); a hash of the payload breaks exact ties
        # deterministically without copying payloads into the comparison.
        carries_time = event_time != "NULL::VARCHAR"
        arg = "{'_data': _data, '_sequence': _sequence" + (", '_event_time': _event_time}" if carries_time else "}")
        picked_time = "last._event_time" if carries_time else "NULL::VARCHAR"
        keyed = f"""
            SELECT _key, last._data AS _data, {picked_time} AS _event_time, last._sequence AS _sequence, _t FROM (
                SELECT _key, max(_t) AS _t,
                       arg_max({arg}, {{'t': _t, 'l': coalesce(length(_sequence), 0), 's': coalesce(_sequence, ''),
                                       'h': hash(_data)}}) AS last
                FROM ({keyed}) GROUP BY _key
            )
        """
        # One row per key: (time, key) is a total order.
        order = "_t NULLS FIRST, _key"
    sql = f"""
        SELECT coalesce(_key, '') AS _key, _data, _event_time, _sequence FROM ({keyed})
        ORDER BY {order}
    """
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    checked = sandbox.check_select(sql)
    sandbox.relation_columns(checked)
    return checked
