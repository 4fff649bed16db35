"""The device registry API: ids, credentials, paging, scopes and the retired routes."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from services.poller.simulator import SimulatedFleet
from tests.poller.conftest import Api, device_record


async def test_leading_zero_cloud_ids_round_trip(api: Api) -> None:
    body = {"cloud_id": "002738", "owner_email": "a@example.com", "eagle_password": "pw-002738"}
    created = await api.client.post("/v1/devices", json=body, headers=api.admin)
    assert created.status_code == 201, created.text
    assert created.json()["results"][0]["cloud_id"] == "002738"

    one = await api.client.get("/v1/devices/002738", headers=api.reader)
    assert one.status_code == 200
    assert one.json()["cloud_id"] == "002738"
    listed = await api.client.get("/v1/devices", headers=api.reader)
    assert [d["cloud_id"] for d in listed.json()["devices"]] == ["002738"]
    assert (await api.client.get("/v1/devices/2738", headers=api.reader)).status_code == 404


async def test_numeric_cloud_id_is_refused_rather_than_losing_zeros(api: Api) -> None:
    body = {"cloud_id": 2738, "owner_email": "a@example.com", "eagle_password": "x"}
    response = await api.client.post("/v1/devices", json=body, headers=api.admin)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "cloud_id"


async def test_credentials_never_appear_in_responses_or_at_rest(api: Api, redis: Redis) -> None:
    secret = "hunter2-very-secret"
    body = {"cloud_id": "000042", "owner_email": "a@example.com", "eagle_user": "eagle-user", "eagle_password": secret}
    responses = [await api.client.post("/v1/devices", json=body, headers=api.admin)]
    responses.append(await api.client.get("/v1/devices/000042", headers=api.reader))
    responses.append(await api.client.get("/v1/devices", headers=api.reader))
    responses.append(
        await api.client.put("/v1/devices/000042", json={"eagle_password": secret + "2"}, headers=api.admin)
    )
    for response in responses:
        assert response.status_code in (200, 201)
        assert secret not in response.text
        assert "eagle-user" not in response.text
    stored = b"".join(v for v in (await redis.hgetall("hw:poller:device:000042")).values())
    assert secret.encode() not in stored and b"eagle-user" not in stored


async def test_json_lines_batch_reports_each_line(api: Api) -> None:
    lines = [
        {"cloud_id": "002506", "user_email": "a@example.com", "user_pw": "one"},
        {"cloud_id": "002507", "owner_email": "not-an-email", "eagle_password": "two"},
        {"cloud_id": "002508", "owner_email": "c@example.com", "eagle_password": "three"},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"
    headers = {**api.admin, "Content-Type": "application/x-ndjson"}
    response = await api.client.post("/v1/devices", content=body, headers=headers)
    assert response.status_code == 201
    result = response.json()
    assert (result["created"], result["failed"]) == (2, 1)
    assert result["results"][1]["status"] == "invalid"
    assert result["results"][1]["errors"][0]["field"] == "owner_email"

    again = await api.client.post("/v1/devices?upsert=true", content=body, headers=headers)
    assert again.json()["updated"] == 2


async def test_duplicate_single_device_conflicts(api: Api) -> None:
    body = {"cloud_id": "000001", "owner_email": "a@example.com", "eagle_password": "x"}
    assert (await api.client.post("/v1/devices", json=body, headers=api.admin)).status_code == 201
    second = await api.client.post("/v1/devices", json=body, headers=api.admin)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"


async def test_devices_are_paged_in_cloud_id_order(api: Api) -> None:
    devices = [{"cloud_id": f"{n:06d}", "owner_email": "a@example.com", "eagle_password": "x"} for n in range(7)]
    await api.client.post("/v1/devices", json={"devices": devices}, headers=api.admin)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/v1/devices", params=params, headers=api.reader)).json()
        seen += [d["cloud_id"] for d in page["devices"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{n:06d}" for n in range(7)]


async def test_writes_need_devices_admin_and_reads_need_a_key(api: Api) -> None:
    body = {"cloud_id": "000001", "owner_email": "a@example.com", "eagle_password": "x"}
    assert (await api.client.post("/v1/devices", json=body, headers=api.reader)).status_code == 403
    assert (await api.client.get("/v1/devices")).status_code == 401
    assert (await api.client.delete("/v1/devices/000001", headers=api.reader)).status_code == 403


async def test_put_and_delete_device(api: Api, fleet: SimulatedFleet) -> None:
    await api.client.post("/v1/devices", json=device_record(fleet, "000003"), headers=api.admin)
    paused = await api.client.put("/v1/devices/000003", json={"state": "paused"}, headers=api.admin)
    assert paused.json()["state"] == "paused"
    assert (await api.client.delete("/v1/devices/000003", headers=api.admin)).status_code == 204
    assert (await api.client.get("/v1/devices/000003", headers=api.reader)).status_code == 404
    assert (await api.client.put("/v1/devices/000003", json={"state": "active"}, headers=api.admin)).status_code == 404


async def test_old_password_in_url_routes_answer_410_with_a_pointer(api: Api) -> None:
    for method, path in [
        ("GET", "/api/users/002738?pw=plaintext123"),
        ("POST", "/api/users/002738?pw=plaintext123"),
        ("GET", "/api/users/?pw=plaintext123"),
        ("GET", "/api/event/002738"),
    ]:
        response = await api.client.request(method, path)
        assert response.status_code == 410, path
        assert "/v1/devices" in response.json()["error"]["message"]
        assert "plaintext123" not in response.text
