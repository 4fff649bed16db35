"""Notification mail over TLS: implicit TLS (SMTPS, port 465 style) and STARTTLS, each against a real aiosmtpd
server presenting a certificate from a CA made in the test; the loader verifies it against that CA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import ValidationError

from services.loader.notify import flush_notifications, queue_notification
from services.loader.settings import LoaderSettings
from tests.helpers import free_port
from tests.loader.conftest import MailSink
from tests.loader.tls_certs import ScratchCA, make_ca


class TlsMailSink(MailSink):
    """A sink that also records whether each message came over an encrypted session."""

    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # STARTTLS sets session.ssl; with implicit TLS the transport itself is the TLS one.
        self.encrypted.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCA:
    return make_ca(tmp_path / "tls")


@pytest.fixture
def implicit_tls_server(ca: ScratchCA) -> Iterator[tuple[int, TlsMailSink]]:
    """An SMTPS server: TLS from the first byte."""
    sink = TlsMailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), ssl_context=ca.server_context())
    controller.start()
    yield controller.port, sink
    controller.stop()


@pytest.fixture
def starttls_server(ca: ScratchCA) -> Iterator[tuple[int, TlsMailSink]]:
    """A submission server that refuses mail until the client has said STARTTLS."""
    sink = TlsMailSink()
    controller = Controller(
        sink, hostname="127.0.0.1", port=free_port(), tls_context=ca.server_context(), require_starttls=True
    )
    controller.start()
    yield controller.port, sink
    controller.stop()


async def _send_one(settings: LoaderSettings, redis: Any) -> int:
    await queue_notification(
        redis,
        settings,
        job_id=1,
        job_name="ads",
        kind="loaded",
        dt="2026-11-20",
        detail="9 rows",
        recipients=["a@x.io"],
    )
    return await flush_notifications(redis, settings)


async def _queued(redis: Any, settings: LoaderSettings) -> int:
    return int(await redis.llen(f"loader:{settings.resource_prefix}:notifications"))


async def test_mail_is_sent_with_implicit_tls_verified_against_the_ca(
    make_settings: Callable[..., Any], redis: Any, ca: ScratchCA, implicit_tls_server: tuple[int, TlsMailSink]
) -> None:
    port, sink = implicit_tls_server
    settings = make_settings(LoaderSettings, smtp_port=port, smtp_implicit_tls=True, smtp_ca_file=ca.ca_file)
    assert await _send_one(settings, redis) == 1
    assert sink.encrypted == [True]
    assert sink.messages[0]["Subject"] == "[headwater] ads: 1 loaded"
    assert await _queued(redis, settings) == 0


async def test_mail_is_sent_after_starttls_verified_against_the_ca(
    make_settings: Callable[..., Any], redis: Any, ca: ScratchCA, starttls_server: tuple[int, TlsMailSink]
) -> None:
    port, sink = starttls_server
    settings = make_settings(LoaderSettings, smtp_port=port, smtp_starttls=True, smtp_ca_file=ca.ca_file)
    assert await _send_one(settings, redis) == 1
    assert sink.encrypted == [True]
    assert sink.messages[0]["X-Envelope-To"] == "a@x.io"


async def test_a_server_requiring_starttls_refuses_plain_mail_and_the_batch_stays_queued(
    make_settings: Callable[..., Any], redis: Any, starttls_server: tuple[int, TlsMailSink]
) -> None:
    port, sink = starttls_server
    settings = make_settings(LoaderSettings, smtp_port=port)
    assert await _send_one(settings, redis) == 0
    assert sink.messages == [] and await _queued(redis, settings) == 1


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_a_certificate_from_an_unknown_ca_is_refused(
    mode: str,
    make_settings: Callable[..., Any],
    redis: Any,
    tmp_path: Path,
    implicit_tls_server: tuple[int, TlsMailSink],
    starttls_server: tuple[int, TlsMailSink],
) -> None:
    """Verification is on: trusting another CA (or only the system store) the server is not believed."""
    port, sink = implicit_tls_server if mode == "implicit" else starttls_server
    other = make_ca(tmp_path / "other")
    flag = {"smtp_implicit_tls": True} if mode == "implicit" else {"smtp_starttls": True}
    for ca_file in (other.ca_file, None):
        settings = make_settings(LoaderSettings, smtp_port=port, smtp_ca_file=ca_file, **flag)
        assert await _send_one(settings, redis) == 0
    assert sink.messages == []
    assert await _queued(redis, settings) == 2  # both kept for the next flush


def test_starttls_and_implicit_tls_together_are_refused(make_settings: Callable[..., Any]) -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        make_settings(LoaderSettings, smtp_starttls=True, smtp_implicit_tls=True)
