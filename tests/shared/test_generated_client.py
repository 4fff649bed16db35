"""A client generated from each service's spec (openapi-python-client) imports and calls the real app (#12).

Slow on purpose (marked ``slow``): it runs the generator five times and starts each service's lifespan.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from headwater.config import SERVICES
from headwater.openapi_cmd import generate_spec, render_spec
from headwater.setup_steps import import_all_models
from shared.auth import create_api_key
from shared.db import create_tables

pytestmark = pytest.mark.slow

GENERATOR = Path(sys.executable).with_name("openapi-python-client")

# One read-only call per service, by operation id: what an integrator would try first.
FIRST_CALLS = {
    "ingest": "get_realtime",
    "transform": "list_schemas",
    "loader": "list_jobs",
    "replay": "list_replays",
    "poller": "list_devices",
}


def package_name(service: str) -> str:
    """Return the generated client's package name for ``service``."""
    return f"headwater_{service}_client"


@pytest.fixture(scope="module")
def clients_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory the client packages are generated into (once per module)."""
    if not GENERATOR.exists():
        pytest.skip(f"openapi-python-client is not installed next to {sys.executable}")
    return tmp_path_factory.mktemp("generated-clients")


def generate_client(service: str, root: Path) -> Path:
    """Generate ``service``'s client package from the spec the code serves (once); return its directory."""
    output = root / package_name(service)
    if output.exists():
        return output
    spec = root / f"{service}.json"
    spec.write_text(render_spec(generate_spec(service)), encoding="utf-8")
    config = root / f"{service}.yaml"
    config.write_text(f"package_name_override: {package_name(service)}\npost_hooks: []\n", encoding="utf-8")
    command = [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none", "--config", str(config)]
    result = subprocess.run([*command, "--output-path", str(output)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{service}: the client did not generate\n{result.stdout}\n{result.stderr}"
    return output


@pytest.fixture
def generated(clients_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Return a function generating (once) and importing a service's client package."""
    monkeypatch.syspath_prepend(str(clients_dir))

    def _import(service: str) -> ModuleType:
        generate_client(service, clients_dir)
        return importlib.import_module(package_name(service))

    return _import


def operation_module(package: ModuleType, operation_id: str) -> ModuleType:
    """Import the generated module of one operation (``<package>.api.<tag>.<operation_id>``)."""
    found = sorted(Path(package.__file__).parent.glob(f"api/*/{operation_id}.py"))  # type: ignore[arg-type]
    assert found, f"{package.__name__} has no operation {operation_id!r}"
    return importlib.import_module(f"{package.__name__}.api.{found[0].parent.name}.{operation_id}")


@pytest.mark.parametrize("service", SERVICES)
def test_the_generated_client_imports_every_operation(
    service: str, generated: Callable[[str], ModuleType], clients_dir: Path
) -> None:
    package = generated(service)
    modules = sorted((clients_dir / package_name(service) / "api").glob("*/*.py"))
    operations = [path for path in modules if path.name != "__init__.py"]
    assert operations, f"{service}: no operation was generated"
    for path in operations:
        module = importlib.import_module(f"{package.__name__}.api.{path.parent.name}.{path.stem}")
        assert callable(module.asyncio_detailed)
    importlib.import_module(f"{package.__name__}.models")


def _settings_class(service: str) -> type:
    create_app = importlib.import_module(f"services.{service}.app").create_app
    hint = typing.get_type_hints(create_app)["settings"]
    return next(arg for arg in typing.get_args(hint) or (hint,) if arg is not type(None))


@pytest.mark.parametrize("service", SERVICES)
async def test_a_generated_client_calls_the_service(
    service: str, generated: Callable[[str], ModuleType], make_settings: Callable[..., Any], bootstrapped: Any
) -> None:
    package = generated(service)
    call = operation_module(package, FIRST_CALLS[service])
    app = importlib.import_module(f"services.{service}.app").create_app(make_settings(_settings_class(service)))
    import_all_models()
    async with app.router.lifespan_context(app):
        wiring = app.state.wiring
        await create_tables(wiring.db_engine)
        async with wiring.sessions() as session:
            key = await create_api_key(session=session, scopes=["admin"], name="generated-client")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
            # The injected httpx client replaces the generated one wholesale, so it carries the key itself.
            client = package.AuthenticatedClient(base_url="http://test", token=key).set_async_httpx_client(http)
            response = await call.asyncio_detailed(client=client)
    assert response.status_code == 200, response.content
    parsed = response.parsed
    items = parsed if isinstance(parsed, list) else [parsed]
    # A typed result: the body parsed into the generated models (an empty list parses to an empty list).
    assert parsed is not None
    assert all(type(item).__module__.startswith(f"{package.__name__}.models.") for item in items), parsed
