"""Redis connection helpers."""

from __future__ import annotations

from arq.connections import RedisSettings
from redis.asyncio import Redis

from shared.settings import HeadwaterSettings


def open_redis(settings: HeadwaterSettings) -> Redis:
    """Open a Redis client (bytes in, bytes out) for the configured URL."""
    return Redis.from_url(settings.redis_url, health_check_interval=30, socket_connect_timeout=5)


def arq_redis_settings(settings: HeadwaterSettings) -> RedisSettings:
    """Return arq's connection settings for the configured Redis URL."""
    return RedisSettings.from_dsn(settings.redis_url)
