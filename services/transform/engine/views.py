"""The advertising view: per ad per day impressions, clicks and CTR, accumulated batch by batch.

A view file holds one day, named by the ``dt=`` of its path (as the tables' parts do): no ``dt`` column.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from shared.schemas import TableSchema

VIEW_SCHEMA = pa.schema(
    [
        pa.field("ad_id", pa.string(), nullable=False),
        pa.field("impressions", pa.int64(), nullable=False),
        pa.field("clicks", pa.int64(), nullable=False),
        pa.field("ctr", pa.float64(), nullable=False),
    ]
)
_KEYS = ["ad_id", "event_type"]
_COMPACT_ROWS = 256 * 1024  # partial counts kept before they are summed into one table (bounds memory)


def has_advertising_view(schema: TableSchema) -> bool:
    """Return whether a table feeds the advertising view (it has ad_id and event_type columns)."""
    names = {c.name for c in schema.columns}
    return {"ad_id", "event_type"} <= names


def _sum_counts(partials: list[pa.Table]) -> pa.Table:
    """Sum (ad_id, event_type, n) partial counts into one row per key."""
    summed = pa.concat_tables(partials).group_by(_KEYS, use_threads=False).aggregate([("n", "sum")])
    return summed.select([*_KEYS, "n_sum"]).rename_columns([*_KEYS, "n"])


class AdvertisingView:
    """Count impressions and clicks per (ad_id, day) over the batches of one partition.

    Each batch is reduced to (ad_id, event_type) counts with Arrow's hash aggregation (no per-row Python work);
    partial counts are summed when they pile up and once more at the end.
    """

    def __init__(self) -> None:
        self._partials: list[pa.Table] = []
        self._partial_rows = 0

    def add(self, table: pa.Table) -> None:
        """Add one batch of curated rows (all of the partition's day: other days are bad rows)."""
        if table.num_rows == 0:
            return
        counted = table.select(_KEYS).group_by(_KEYS, use_threads=False).aggregate([([], "count_all")])
        counted = counted.select(["ad_id", "event_type", "count_all"]).rename_columns([*_KEYS, "n"])
        self._partials.append(counted)
        self._partial_rows += counted.num_rows
        if self._partial_rows > _COMPACT_ROWS and len(self._partials) > 1:
            self._partials = [_sum_counts(self._partials)]
            self._partial_rows = self._partials[0].num_rows

    def table(self) -> pa.Table:
        """Return the view rows sorted by ad; CTR is clicks / impressions, 0.0 without impressions."""
        if not self._partials:
            return VIEW_SCHEMA.empty_table()
        counts = _sum_counts(self._partials)
        counts = counts.filter(pc.is_valid(counts.column("ad_id")))
        kind = counts.column("event_type")
        zero = pa.scalar(0, pa.int64())
        counts = counts.append_column(
            "impressions", pc.if_else(pc.fill_null(pc.equal(kind, "impression"), False), counts.column("n"), zero)
        )
        counts = counts.append_column(
            "clicks", pc.if_else(pc.fill_null(pc.equal(kind, "click"), False), counts.column("n"), zero)
        )
        per_ad = counts.group_by("ad_id", use_threads=False).aggregate([("impressions", "sum"), ("clicks", "sum")])
        per_ad = per_ad.sort_by("ad_id")
        ad_id, impressions, clicks = (per_ad.column(n) for n in ("ad_id", "impressions_sum", "clicks_sum"))
        has_impressions = pc.greater(impressions, 0)
        ctr = pc.if_else(
            has_impressions, pc.divide(pc.cast(clicks, pa.float64()), pc.if_else(has_impressions, impressions, 1)), 0.0
        )
        return pa.Table.from_arrays([ad_id, impressions, clicks, ctr], schema=VIEW_SCHEMA)
