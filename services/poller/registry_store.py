"""The durable copy of the device registry: one ``poller_device`` row per device in the metadata database.

The registry writes here first and to Redis second, so an acknowledged registration survives Redis losing its
data; :meth:`services.poller.registry.Registry.ensure_loaded` rebuilds Redis from these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.poller.models import PollerDevice


@dataclass(frozen=True)
class StoredDevice:
    """A registration as the database holds it (``secret`` is the Fernet token)."""

    cloud_id: str
    owner_email: str
    secret: str
    protocol: str
    host: str
    state: str
    created_at: datetime
    deleted: bool = False

    def redis_fields(self) -> dict[str, str]:
        """Return the hash fields a Redis save writes for this registration."""
        return {
            "owner_email": self.owner_email,
            "secret": self.secret,
            "protocol": self.protocol,
            "host": self.host,
            "created_at": repr(self.created_at.timestamp()),
        }


def _stored(row: PollerDevice) -> StoredDevice:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return StoredDevice(
        cloud_id=row.cloud_id,
        owner_email=row.owner_email,
        secret=row.secret,
        protocol=row.protocol,
        host=row.host,
        state=row.state,
        created_at=created,
        deleted=row.deleted,
    )


def _apply(
    session: AsyncSession, row: PollerDevice | None, device: StoredDevice, *, create_only: bool
) -> tuple[str, PollerDevice]:
    """Write ``device`` onto its row (added to ``session``); return the status and the row."""
    if row is not None and not row.deleted and create_only:
        return "exists", row
    now = datetime.now(UTC)
    status = "updated" if row is not None and not row.deleted else "created"
    if row is None:
        row = PollerDevice(cloud_id=device.cloud_id, created_at=device.created_at, updated_at=now)
    elif status == "created":
        row.created_at = device.created_at
    row.owner_email, row.secret = device.owner_email, device.secret
    row.protocol, row.host, row.state = device.protocol, device.host, device.state
    row.updated_at, row.deleted = now, False
    session.add(row)
    return status, row


class RegistryStore:
    """Reads and writes ``poller_device`` rows (one short transaction per call)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def get(self, cloud_id: str) -> StoredDevice | None:
        """Return the device's live registration, or None when unknown or deleted."""
        async with self.sessions() as session:
            row = await session.get(PollerDevice, cloud_id)
            return _stored(row) if row is not None and not row.deleted else None

    async def save(self, device: StoredDevice, *, create_only: bool = False) -> tuple[str, StoredDevice]:
        """Write a registration; return ("created"|"updated"|"exists", what is stored).

        ``create_only`` leaves a live row alone ("exists"); a tombstone is revived as a new registration.
        """
        async with self.sessions() as session:
            row = await session.get(PollerDevice, device.cloud_id)
            status, row = _apply(session, row, device, create_only=create_only)
            result = status, _stored(row)
            try:
                await session.commit()
            except IntegrityError:  # a concurrent create of the same id won
                await session.rollback()
                if create_only:
                    return "exists", device
                raise
            return result

    async def save_many(self, devices: list[StoredDevice], *, create_only: bool) -> list[tuple[str, StoredDevice]]:
        """Write several registrations, a chunk per transaction (a batch of thousands is not a commit each)."""
        out: list[tuple[str, StoredDevice]] = []
        for start in range(0, len(devices), 500):
            chunk = devices[start : start + 500]
            async with self.sessions() as session:
                ids = {device.cloud_id for device in chunk}
                found = await session.exec(select(PollerDevice).where(col(PollerDevice.cloud_id).in_(ids)))
                rows: dict[str, PollerDevice] = {row.cloud_id: row for row in found.all()}
                results: list[tuple[str, StoredDevice]] = []
                for device in chunk:
                    # A second line for the same id sees the row the first one wrote.
                    status, rows[device.cloud_id] = _apply(
                        session, rows.get(device.cloud_id), device, create_only=create_only
                    )
                    results.append((status, _stored(rows[device.cloud_id])))
                try:
                    await session.commit()
                except IntegrityError:  # a concurrent writer got in between: this chunk one by one
                    await session.rollback()
                    results = [await self.save(device, create_only=create_only) for device in chunk]
            out.extend(results)
        return out

    async def adopt(self, device: StoredDevice) -> bool:
        """Insert a registration only if no row (not even a tombstone) has its id; return whether it did."""
        async with self.sessions() as session:
            if await session.get(PollerDevice, device.cloud_id) is not None:
                return False
            now = datetime.now(UTC)
            session.add(
                PollerDevice(
                    cloud_id=device.cloud_id,
                    owner_email=device.owner_email,
                    secret=device.secret,
                    protocol=device.protocol,
                    host=device.host,
                    state=device.state,
                    created_at=device.created_at,
                    updated_at=now,
                )
            )
            try:
                await session.commit()
            except IntegrityError:  # someone else wrote it meanwhile
                return False
            return True

    async def delete(self, cloud_id: str) -> bool:
        """Mark the device deleted (its credentials are dropped); return whether it was registered."""
        async with self.sessions() as session:
            row = await session.get(PollerDevice, cloud_id)
            if row is None:
                # Unknown here (e.g. registered before this table existed): a tombstone still keeps it deleted.
                now = datetime.now(UTC)
                session.add(PollerDevice(cloud_id=cloud_id, created_at=now, updated_at=now, deleted=True))
                found = False
            else:
                found = not row.deleted
                row.deleted, row.secret, row.updated_at = True, "", datetime.now(UTC)
                session.add(row)
            await session.commit()
            return found

    async def all(self) -> list[StoredDevice]:
        """Return every row, tombstones included."""
        async with self.sessions() as session:
            rows = (await session.exec(select(PollerDevice))).all()
            return [_stored(row) for row in rows]
