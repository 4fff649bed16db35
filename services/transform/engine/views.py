"""The advertising view: per ad per day impressions, clicks and CTR, accumulated batch by batch."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from shared.schemas import TableSchema

VIEW_SCHEMA = pa.schema(
    [
        pa.field("ad_id", pa.string(), nullable=False),
        pa.field("dt", pa.date32(), nullable=False),
        pa.field("impressions", pa.int64(), nullable=False),
        pa.field("clicks", pa.int64(), nullable=False),
        pa.field("ctr", pa.float64(), nullable=False),
    ]
)


def has_advertising_view(schema: TableSchema) -> bool:
    """Return whether a table feeds the advertising view (it has ad_id and event_type columns)."""
    names = {c.name for c in schema.columns}
    return {"ad_id", "event_type"} <= names


class AdvertisingView:
    """Count impressions and clicks per (ad_id, day) over the batches of one partition."""

    def __init__(self, dt: date) -> None:
        self.dt = dt
        self.counts: dict[tuple[str, date], list[int]] = {}

    def add(self, table: pa.Table) -> None:
        """Add one batch of curated rows (all of the partition's day: other days are bad rows)."""
        if table.num_rows == 0:
            return
        ad_id, event_type = table.column("ad_id"), table.column("event_type")
        for position, rows in enumerate(
            (ad_id, ad_id.filter(pc.equal(event_type, "impression")), ad_id.filter(pc.equal(event_type, "click")))
        ):
            counted = pc.value_counts(rows)
            for key, count in zip(
                counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
            ):
                if key is not None:
                    self.counts.setdefault((key, self.dt), [0, 0, 0])[position] += count

    def table(self) -> pa.Table:
        """Return the view rows sorted by ad and day; CTR is clicks / impressions, 0.0 without impressions."""
        keys = sorted(self.counts)
        impressions = [self.counts[k][1] for k in keys]
        clicks = [self.counts[k][2] for k in keys]
        ctr = [c / i if i else 0.0 for i, c in zip(impressions, clicks, strict=True)]
        return pa.Table.from_arrays(
            [
                pa.array([k[0] for k in keys], pa.string()),
                pa.array([k[1] for k in keys], pa.date32()),
                pa.array(impressions, pa.int64()),
                pa.array(clicks, pa.int64()),
                pa.array(ctr, pa.float64()),
            ],
            schema=VIEW_SCHEMA,
        )
