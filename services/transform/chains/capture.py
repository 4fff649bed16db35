"""Capture what a running task prints and logs into its own buffer, even with several tasks in one worker.

``sys.stdout``/``sys.stderr`` are replaced once by proxies that write to the current task's buffer (a context
variable, so concurrent tasks in one event loop do not mix) and otherwise to the real stream. Log lines are
copied to the buffer and still reach the service's log stream:

- ``logging`` records through a handler on the root logger;
- structlog events through a wrapper around the last processor of structlog's live configuration (the renderer
  ``shared.logging.configure_logging`` installs): the rendered line is appended to the buffer as well. The
  wrapper replaces the list item in place so that loggers already cached (``cache_logger_on_first_use``) share it.

A log sink whose stream is one of our proxies (logging configured after the proxies were installed) would
put every line in the buffer twice: handlers are pointed back at the real stream, and the line structlog is
about to print is let through the proxy to the real stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import structlog

_current: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("chain_task_output", default=None)
# The structlog line just copied to the buffer, which its logger is about to write to its file.
_teed: contextvars.ContextVar[str | None] = contextvars.ContextVar("chain_task_teed_line", default=None)


class _Proxy:
    """A text stream that writes to the current task's buffer, else to the real stream."""

    def __init__(self, real: TextIO) -> None:
        self._real = real

    def write(self, text: str) -> int:
        buffer = _current.get()
        if buffer is None:
            return self._real.write(text)
        teed = _teed.get()
        if teed is not None and text == teed:  # a log line already in the buffer: only the real stream lacks it
            # print() writes the line, then its end: let the end through too.
            _teed.set(None if text.endswith("\n") else "\n")
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


class _TeeRenderer:
    """Wrap structlog's last processor: a rendered line emitted while a task runs also goes to its buffer."""

    def __init__(self, renderer: Callable[..., Any]) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        rendered = self.renderer(logger, method, event_dict)
        buffer = _current.get()
        if buffer is not None and isinstance(rendered, str | bytes):
            line = rendered.decode(errors="replace") if isinstance(rendered, bytes) else rendered
            buffer.append(line + "\n")
            _teed.set(line)
        # Anything else (a dict handed on to the standard library) reaches the buffer through _Handler.
        return rendered


def _install_structlog() -> None:
    processors = structlog.get_config()["processors"]
    if processors and not isinstance(processors[-1], _TeeRenderer):
        processors[-1] = _TeeRenderer(processors[-1])


def _install() -> None:
    if not isinstance(sys.stdout, _Proxy):
        sys.stdout = _Proxy(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Proxy):
        sys.stderr = _Proxy(sys.stderr)  # type: ignore[assignment]
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and isinstance(handler.stream, _Proxy):
            handler.setStream(handler.stream._real)
    if not any(isinstance(h, _Handler) for h in root.handlers):
        handler = _Handler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    _install_structlog()


@contextlib.contextmanager
def captured(buffer: list[str]) -> Iterator[list[str]]:
    """Send what the current task prints and logs to ``buffer`` while the block runs."""
    _install()
    token = _current.set(buffer)
    teed = _teed.set(None)
    try:
        yield buffer
    finally:
        _teed.reset(teed)
        _current.reset(token)
