"""Test helpers: free ports, polling with a deadline, child processes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.1, message: str = ""
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {message} (last value: {last!r})")


def wait_until_sync(probe: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.1, message: str = "") -> T:
    """Synchronous twin of ``wait_until``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {message} (last value: {last!r})")
