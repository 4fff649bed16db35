"""Request/response models of the poller, and its one table: each device's durable registration (``poller_device``).

The registry is served from Redis; ``PollerDevice`` is the copy it is rebuilt from (see ``registry_store``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from services.poller.devices import LOCAL_PROTOCOLS, Protocol

MAX_BATCH = 10_000
DeviceState = Literal["active", "paused", "auth_failed", "unreachable"]
DEVICE_STATES: tuple[str, ...] = ("active", "paused", "auth_failed", "unreachable")


class PollerDevice(SQLModel, table=True):
    """A device's registration as acknowledged (durable); runtime state and counters live only in Redis.

    ``secret`` is the Fernet token of the credentials (never clear text); ``state`` is what an operator set
    ("active" or "paused"), not what polling observed. A deleted device keeps a tombstone row (secret cleared)
    so a rebuild never brings it back from a stale Redis copy.
    """

    __tablename__ = "poller_device"

    cloud_id: str = SQLField(primary_key=True, max_length=64)
    owner_email: str = SQLField(default="", max_length=320)
    secret: str = ""
    protocol: str = SQLField(default="cloud", max_length=32)
    host: str = SQLField(default="", max_length=300)
    state: str = SQLField(default="active", max_length=16)
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


# Cloud ids are strings: "002738" must never become 2738, so numbers are refused, not coerced.
CloudId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# "address[:port]" of a gateway on the LAN: a host name, IPv4 or bracketed IPv6, never a URL or a path.
Host = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
]
# Credentials are printable ASCII: the cloud sends the user (the owner's e-mail by default) and the password as HTTP
# header values, which carry nothing else reliably (see services.poller.devices.transport), and an Install Code is
# 16 hex digits. Declared in the spec and enforced per field, so a 422 names the field and never quotes the value.
HEADER_TEXT = r"^[\x20-\x7e]*$"
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[!-?A-~]+@[!-?A-~]+$")]
HeaderText = Annotated[str, StringConstraints(max_length=320, pattern=HEADER_TEXT)]


def _printable_ascii(value: Any) -> Any:
    secret = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(secret, str) and not re.fullmatch(HEADER_TEXT, secret):
        raise ValueError("must be printable ASCII: the cloud sends it in an HTTP header and Install Codes are hex")
    return value


Password = Annotated[
    SecretStr,
    BeforeValidator(_printable_ascii),
    WithJsonSchema({"type": "string", "format": "password", "writeOnly": True, "pattern": HEADER_TEXT}),
]

_EXAMPLE_CREATE = {"cloud_id": "002738", "owner_email": "owner@example.com", "eagle_password": "install-code"}
_EXAMPLE_READ = {
    "cloud_id": "002738",
    "owner_email": "owner@example.com",
    "protocol": "cloud",
    "host": None,
    "state": "active",
    "last_error": None,
    "last_error_at": None,
    "total_events_logged": 2725,
    "first_timestamp": "2026-11-25T10:00:00.120000Z",
    "last_timestamp": "2026-11-25T14:32:06.310000Z",
    "shard": 17,
    "created_at": "2026-11-25T09:59:40Z",
    "updated_at": "2026-11-25T09:59:40Z",
}


_PROTOCOL_HELP = (
    "how the poller reaches the Eagle: cloud (Rainforest cloud, Cloud-ID/User/Password headers), eagle100-local "
    "(Eagle-100 REST API 1.1 on the LAN) or eagle200-local (Eagle-200 local API); records without one are cloud"
)
_HOST_HELP = "address[:port] of the gateway on the LAN; required for the local protocols, absent for cloud"
_PASSWORD_HELP = "the Rainforest cloud password, or for a local protocol the gateway's Install Code"


def check_host(protocol: str, host: str | None) -> None:
    """Raise ValueError unless ``host`` fits ``protocol`` (local protocols need one, the cloud takes none)."""
    if protocol in LOCAL_PROTOCOLS and not host:
        raise ValueError(f"host is required for protocol {protocol}")
    if protocol == "cloud" and host:
        raise ValueError("host is only for the local protocols")


# JSON Schema if/then of check_host: "protocol absent or cloud" -> no host. The ``json_schema_extra`` dict is merged
# into the model's schema, where the properties above hold the types and patterns.
_CLOUD_PROTOCOL: dict[str, Any] = {"properties": {"protocol": {"const": "cloud"}}}
_NO_HOST: dict[str, Any] = {"properties": {"host": {"type": "null"}}}


class DeviceCreate(BaseModel):
    """A device to register. The seed's JSON-lines fields (user_email, user_pw) are accepted too."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                _EXAMPLE_CREATE,
                {
                    "cloud_id": "00a1b2",
                    "owner_email": "owner@example.com",
                    "eagle_password": "0123456789abcdef",
                    "protocol": "eagle200-local",
                    "host": "192.168.1.40",
                },
            ],
            # check_host, said in the schema: the cloud (the default) takes no host, a local protocol needs one.
            "if": _CLOUD_PROTOCOL,
            "then": _NO_HOST,
            "else": {"required": ["host"], "properties": {"host": {"type": "string"}}},
        },
    )

    cloud_id: CloudId
    owner_email: Email = Field(validation_alias=AliasChoices("owner_email", "user_email"))
    eagle_user: HeaderText | None = Field(default=None, description="Eagle cloud user; the owner by default")
    eagle_password: Password = Field(
        validation_alias=AliasChoices("eagle_password", "user_pw", "password", "install_code"),
        description=_PASSWORD_HELP,
    )
    protocol: Protocol = Field(default="cloud", description=_PROTOCOL_HELP)
    host: Host | None = Field(default=None, description=_HOST_HELP)
    state: Literal["active", "paused"] = "active"

    @model_validator(mode="after")
    def _host_fits_protocol(self) -> DeviceCreate:
        check_host(self.protocol, self.host)
        return self


class DeviceUpdate(BaseModel):
    """Fields to change; new credentials re-enable a device that failed authentication."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"eagle_password": "new-install-code"}, {"state": "paused"}],
            # Moving to the cloud takes no host; a host or protocol that does not fit the STORED one is a 409.
            "if": {"required": ["protocol"], **_CLOUD_PROTOCOL},
            "then": _NO_HOST,
        },
    )

    owner_email: Email | None = None
    eagle_user: HeaderText | None = None
    eagle_password: Password | None = Field(default=None, description=_PASSWORD_HELP)
    protocol: Protocol | None = Field(default=None, description=_PROTOCOL_HELP)
    host: Host | None = Field(default=None, description=_HOST_HELP)
    state: Literal["active", "paused"] | None = None


class DeviceBatch(BaseModel):
    """Several devices at once."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"devices": [_EXAMPLE_CREATE]}]})

    devices: list[Any] = Field(min_length=1, max_length=MAX_BATCH, description="devices, each validated on its own")


class DeviceRead(BaseModel):
    """A registered device. Credentials are never part of it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_READ]})

    cloud_id: str
    owner_email: str
    protocol: Protocol = "cloud"
    host: str | None = None
    state: DeviceState
    last_error: str | None = None
    last_error_at: datetime | None = None
    total_events_logged: int = 0
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    shard: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ItemResult(BaseModel):
    """What happened to one device of a create request."""

    index: int
    cloud_id: str | None = None
    status: Literal["created", "updated", "exists", "invalid"]
    errors: list[dict[str, Any]] = []


class CreateResult(BaseModel):
    """Outcome of ``POST /v1/devices``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "created": 1,
                    "updated": 0,
                    "failed": 0,
                    "results": [{"index": 0, "cloud_id": "002738", "status": "created"}],
                }
            ]
        }
    )

    created: int
    updated: int
    failed: int
    results: list[ItemResult]


class DevicePage(BaseModel):
    """One page of devices in cloud-id order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"devices": [_EXAMPLE_READ], "next_cursor": "002738"}]})

    devices: list[DeviceRead]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class Reading(BaseModel):
    """One instantaneous reading of a meter."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cloud_id": "002738",
                    "timestamp": "2026-11-25T14:32:06.310000Z",
                    "demand_kw": 1.234,
                    "summation_delivered_kwh": 10234.5,
                    "summation_received_kwh": 0.0,
                    "raw": {"InstantaneousDemand": {"Demand": "0x0004d2", "Multiplier": "0x1", "Divisor": "0x3e8"}},
                }
            ]
        }
    )

    cloud_id: str
    timestamp: datetime
    demand_kw: float
    summation_delivered_kwh: float | None = None
    summation_received_kwh: float | None = None
    raw: dict[str, Any] = {}


class ShardInfo(BaseModel):
    """Who holds one shard's lease."""

    shard: int
    owner: str | None
    lease_age_s: float | None = Field(description="seconds since the owner last renewed the lease")
    lease_expires_in_s: float | None
    devices: int


class ReplicaInfo(BaseModel):
    """A live poller replica."""

    replica_id: str
    heartbeat_age_s: float
    shards: list[int]
    devices: int


class ShardMap(BaseModel):
    """The fleet split across replicas."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shard_count": 2,
                    "replicas": [{"replica_id": "poller-a", "heartbeat_age_s": 0.8, "shards": [0, 1], "devices": 3}],
                    "shards": [
                        {"shard": 0, "owner": "poller-a", "lease_age_s": 0.8, "lease_expires_in_s": 9.2, "devices": 1},
                        {"shard": 1, "owner": "poller-a", "lease_age_s": 0.8, "lease_expires_in_s": 9.2, "devices": 2},
                    ],
                }
            ]
        }
    )

    shard_count: int
    replicas: list[ReplicaInfo]
    shards: list[ShardInfo]


class MinuteStats(BaseModel):
    """Polling figures of one minute (UTC)."""

    minute: datetime
    reads: int
    on_time: int
    late: int
    failures: int


class PollerStats(BaseModel):
    """Figures for the page: devices by state, readings per minute, on-time percentage."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "devices_by_state": {"active": 4990, "paused": 0, "auth_failed": 4, "unreachable": 6},
                    "minutes": [
                        {"minute": "2026-11-25T14:31:00Z", "reads": 49900, "on_time": 49890, "late": 10, "failures": 60}
                    ],
                    "on_time_pct": 99.98,
                }
            ]
        }
    )

    devices_by_state: dict[str, int]
    minutes: list[MinuteStats]
    on_time_pct: float | None
