"""Capture what a running task prints and logs into its own buffer, even with several tasks in one worker.

``sys.stdout``/``sys.stderr`` are replaced once by proxies that write to the current task's buffer (a context
variable, so concurrent tasks in one event loop do not mix) and otherwise to the real stream; a logging handler
on the root logger does the same for ``logging`` records.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_current: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("chain_task_output", default=None)


class _Proxy:
    """A text stream that writes to the current task's buffer, else to the real stream."""

    def __init__(self, real: TextIO) -> None:
        self._real = real

    def write(self, text: str) -> int:
        buffer = _current.get()
        if buffer is None:
            return self._real.write(text)
        buffer.append(text)
        return len(text)

    def flush(self) -> None:
        if _current.get() is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Handler(logging.Handler):
    """Append log records of the current task to its buffer."""

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _current.get()
        if buffer is not None:
            buffer.append(self.format(record) + "\n")


def _install() -> None:
    if not isinstance(sys.stdout, _Proxy):
        sys.stdout = _Proxy(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Proxy):
        sys.stderr = _Proxy(sys.stderr)  # type: ignore[assignment]
    root = logging.getLogger()
    if not any(isinstance(h, _Handler) for h in root.handlers):
        handler = _Handler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


@contextlib.contextmanager
def captured(buffer: list[str]) -> Iterator[list[str]]:
    """Send what the current task prints and logs to ``buffer`` while the block runs."""
    _install()
    token = _current.set(buffer)
    try:
        yield buffer
    finally:
        _current.reset(token)
