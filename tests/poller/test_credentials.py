"""Credentials a protocol cannot send (#13): refused at registration, recorded on the device, never logged.

A non-ASCII cloud password used to be stored as it came; every poll then raised ``UnicodeEncodeError`` in httpx
(header values are ASCII), logged a full traceback quoting a character of the password every interval, and the
device kept showing ``active``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.poller.crypto import encrypt_credentials
from services.poller.devices.reader import DeviceReader
from services.poller.models import DeviceCreate
from services.poller.registry import Registry
from services.poller.simulator import SimulatedFleet
from tests.helpers import wait_until
from tests.poller.conftest import Api, device_record

NON_ASCII = "pässwörd-ñ"  # latin-1 and beyond it both
NON_LATIN1 = "пароль-密码"


def _logged(captured_logs: Any) -> str:
    return "\n".join(f"{call.method_name} {call.args!r} {call.kwargs!r}" for call in captured_logs.calls)


@pytest.mark.parametrize("password", [NON_ASCII, NON_LATIN1, "line\r\nX-Injected: 1"])
async def test_cloud_password_that_no_header_can_carry_is_refused_naming_the_field(api: Api, password: str) -> None:
    body = {"cloud_id": "002738", "owner_email": "a@example.com", "eagle_password": password}
    response = await api.client.post("/v1/devices", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["eagle_password"]
    assert password not in response.text and "ä" not in response.text and "\\u" not in response.text
    assert (await api.client.get("/v1/devices/002738", headers=api.reader)).status_code == 404


async def test_batch_item_and_update_with_an_unsendable_password_fail_alone(api: Api) -> None:
    lines = (
        '{"cloud_id": "000001", "user_email": "a@example.com", "user_pw": "fine"}\n'
        f'{{"cloud_id": "000002", "user_email": "b@example.com", "user_pw": "{NON_ASCII}"}}\n'
    )
    response = await api.client.post(
        "/v1/devices", content=lines.encode(), headers={**api.admin, "Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 201, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid"]
    # The field is named as the client sent it (the seed's user_pw).
    assert results[1]["errors"][0]["field"] == "user_pw" and NON_ASCII not in response.text

    put = await api.client.put("/v1/devices/000001", json={"eagle_password": NON_LATIN1}, headers=api.admin)
    assert put.status_code == 422 and put.json()["error"]["details"][0]["field"] == "eagle_password"
    # The owner's e-mail is the cloud User header when no eagle_user is given: the same rule, naming that field.
    created = await api.client.post(
        "/v1/devices",
        json={"cloud_id": "000003", "owner_email": "jö@example.com", "eagle_password": "fine"},
        headers=api.admin,
    )
    assert created.status_code == 422 and created.json()["error"]["details"][0]["field"] == "owner_email"


async def test_install_codes_are_ascii_too_and_a_stored_one_cannot_move_to_the_cloud(
    api: Api, registry: Registry
) -> None:
    body = {
        "cloud_id": "00a1b2",
        "owner_email": "a@example.com",
        "eagle_password": NON_LATIN1,
        "protocol": "eagle200-local",
        "host": "192.168.1.40",
    }
    response = await api.client.post("/v1/devices", json=body, headers=api.admin)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "eagle_password"
    # A record stored before the rule (HTTP Basic carries it as UTF-8 on the LAN) cannot be moved to the cloud.
    secret = encrypt_credentials(registry.fernet, user="a@example.com", password=NON_LATIN1)
    await registry._run_save(
        cloud_id="00a1b2",
        mode="create",
        fields={"owner_email": "a@example.com", "secret": secret, "protocol": "eagle200-local", "host": "10.0.0.9"},
        state="active",
        creds_changed=True,
    )
    moved = await api.client.put("/v1/devices/00a1b2", json={"protocol": "cloud"}, headers=api.admin)
    assert moved.status_code == 422 and moved.json()["error"]["details"][0]["field"] == "eagle_password"
    assert NON_LATIN1 not in moved.text


async def test_stored_unsendable_password_marks_the_device_and_logs_no_trace_of_it(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any], captured_logs: Any
) -> None:
    await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, "000001")))
    # A record written before registration checked the encoding: stored directly, as an old registry holds it.
    secret = encrypt_credentials(registry.fernet, user=fleet.devices["000007"].user, password=NON_ASCII)
    await registry._run_save(
        cloud_id="000007",
        mode="create",
        fields={"owner_email": "a@example.com", "secret": secret, "protocol": "cloud", "host": ""},
        state="active",
        creds_changed=True,
    )
    await start_poller()

    async def _failed() -> bool:
        return (await registry.get("000007")).state == "auth_failed"

    await wait_until(_failed, timeout=10, message="000007 marked auth_failed")
    device = await registry.get("000007")
    assert device.last_error and "credentials cannot be sent" in device.last_error and "password" in device.last_error
    await wait_until(lambda: _counted(registry, "000001", 3), timeout=10, message="the healthy device keeps being read")
    assert fleet.requests["000007"] == 0, "the unsendable password reached the wire"
    logged = _logged(captured_logs)
    assert "poll_crashed" not in logged and "exception" not in logged
    assert not any(char in logged for char in "äöñ") and NON_ASCII not in logged


async def test_unexpected_poll_crash_is_recorded_on_the_device_without_a_traceback(
    registry: Registry,
    fleet: SimulatedFleet,
    start_poller: Callable[..., Any],
    captured_logs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def crash(self: DeviceReader, **kwargs: Any) -> Any:
        "secret-é".encode("ascii")  # what httpx did with a header value: the message quotes the character
        raise AssertionError("unreachable")

    monkeypatch.setattr(DeviceReader, "read", crash)
    await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, "000001")))
    await start_poller()

    async def _recorded() -> bool:
        return (await registry.get("000001")).state == "unreachable"

    await wait_until(_recorded, timeout=10, message="the crash is recorded on the device")
    assert (await registry.get("000001")).last_error == "poll failed: UnicodeEncodeError"
    crashes = [call for call in captured_logs.calls if call.kwargs.get("event") == "poll_crashed"]
    assert crashes and all(call.method_name == "error" and "exc_info" not in call.kwargs for call in crashes)
    assert "é" not in _logged(captured_logs) and "\\xe9" not in _logged(captured_logs)


async def _counted(registry: Registry, cloud_id: str, n: int) -> bool:
    return (await registry.get(cloud_id)).total_events_logged >= n
