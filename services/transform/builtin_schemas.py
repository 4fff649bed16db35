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

BUILTIN_SCHEMAS: dict[str, str] = {"ad_events": AD_EVENTS_V1, "meter_reads": METER_READS_V1}
