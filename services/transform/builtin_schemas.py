"""The schemas every deployment has (contract 3): registered idempotently when transform starts."""

from __future__ import annotations

AD_EVENTS_V1 = """\
name: ad_events
version: 1
description: Impressions and clicks from the beacon source.
columns:
  - {name: event_id, source: event_id, type: varchar(64), nullable: false}
  - {name: event_type, source: type, type: varchar(32), nullable: false}
  - {name: ad_id, source: ad_id, type: varchar(128)}
  - {name: campaign_id, source: campaign_id, type: varchar(128)}
  - {name: placement, source: placement, type: varchar(128)}
  - {name: user_id, source: user_id, type: varchar(256)}
  - {name: event_time, source: event_time, type: timestamp, nullable: false}
  - {name: received_at, source: received_at, type: timestamp}
  - {name: dt, source: event_time, type: date, nullable: false}
partition_column: dt
sort_key: [event_time]
dist_key: ad_id
"""

METER_READS_V1 = """\
name: meter_reads
version: 1
description: Energy meter reads from the meter_read source.
columns:
  - {name: event_id, source: event_id, type: varchar(64), nullable: false}
  - {name: cloud_id, source: cloud_id, type: varchar(64), nullable: false}
  - {name: event_time, source: event_time, type: timestamp, nullable: false}
  - {name: demand_kw, source: demand_kw, type: double precision}
  - {name: summation_delivered_kwh, source: summation_delivered_kwh, type: double precision}
  - {name: summation_received_kwh, source: summation_received_kwh, type: double precision}
  - {name: dt, source: event_time, type: date, nullable: false}
partition_column: dt
sort_key: [event_time]
dist_key: cloud_id
"""


def _analytics_schema(name: str, description: str, extra: tuple[str, ...] = ()) -> str:
    """Return the schema of one generic analytics-SDK event type (ingest's Snowplow and Segment routes)."""
    columns = "".join(f"  - {{name: {column}, source: properties.{column}, type: varchar(2048)}}\n" for column in extra)
    return f"""\
name: {name}
version: 1
description: {description}
columns:
  - {{name: event_id, source: event_id, type: varchar(128), nullable: false}}
  - {{name: event_name, source: event_name, type: varchar(256)}}
  - {{name: user_id, source: user_id, type: varchar(256)}}
  - {{name: anonymous_id, source: anonymous_id, type: varchar(256)}}
{columns}  - {{name: protocol, source: protocol, type: varchar(16)}}
  - {{name: event_time, source: event_time, type: timestamp, nullable: false}}
  - {{name: received_at, source: received_at, type: timestamp}}
  - {{name: dt, source: event_time, type: date, nullable: false}}
partition_column: dt
sort_key: [event_time]
dist_key: anonymous_id
"""


# Generic event types of the analytics SDKs (Snowplow, Segment): one curated table each.
ANALYTICS_SCHEMAS: dict[str, str] = {
    "track": _analytics_schema("track", "Named events (Segment track, Snowplow structured/self-describing)."),
    "page": _analytics_schema("page", "Page views (Segment page, Snowplow page view).", ("url", "referrer")),
    "screen": _analytics_schema("screen", "Screen views (Segment screen, Snowplow screen_view)."),
    "identify": _analytics_schema("identify", "Who a user is (Segment identify)."),
    "group": _analytics_schema("group", "Which group a user belongs to (Segment group).", ("group_id",)),
    "alias": _analytics_schema("alias", "One user known by two ids (Segment alias).", ("previous_id",)),
}

BUILTIN_SCHEMAS: dict[str, str] = {"ad_events": AD_EVENTS_V1, "meter_reads": METER_READS_V1, **ANALYTICS_SCHEMAS}
