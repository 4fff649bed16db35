"""Where a service's old page went: every page now lives in the console (one origin, one sign-in).

A service's ``/ui/...`` answers a redirect to its page in the console, so old bookmarks keep working; the service
itself serves no page and handles no key in a browser any more. ``HEADWATER_CONSOLE_URL`` says where the console is
(``headwater up`` sets it; in a cluster, the Ingress host).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleLink(BaseSettings):
    """The console's public base URL."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore")

    console_url: str = "http://127.0.0.1:8000"


def page_moved_router(pages: dict[str, str], default: str) -> APIRouter:
    """Return a router answering ``/ui/<file>`` with a redirect to ``pages[file]`` (else ``default``) in the console."""
    router = APIRouter(include_in_schema=False)
    base = ConsoleLink().console_url.rstrip("/")

    @router.get("/ui", include_in_schema=False)
    @router.get("/ui/{page:path}", include_in_schema=False)
    async def page_moved(page: str = "") -> RedirectResponse:
        """The page moved to the console."""
        return RedirectResponse(f"{base}{pages.get(page, default)}", status_code=308)

    return router
