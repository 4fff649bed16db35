"""What the Eagle clients share: one POST to ``/cgi-bin/post_manager`` and the reading of refusals.

Every Eagle protocol is ``POST .../cgi-bin/post_manager`` with an XML command fragment as the body. A refusal
comes in one of two ways, and both are read here:

- an HTTP status: 401/403 (the Eagle-200's web server answers 401 to missing or wrong Basic credentials, which
  ``aioeagle`` turns into ``BadAuth``), 429/5xx (busy or broken: retry later);
- HTTP 200 with an error body instead of the answer: XML ``<Error><Text>...</Text></Error>`` or JSON
  ``{"Error": {"Text": "..."}}``. Home Assistant's Eagle-100 set-up reads a 200 answer that is not JSON as bad
  credentials; the public manuals give no error schema, so the text decides: words about credentials
  (authentication, password, user, cloud id, install code, unauthorized) make :class:`DeviceAuthError`,
  anything else (unknown command, no meter) a plain :class:`DeviceError`.

Credentials and their encoding (:func:`unsendable_credential`, checked at registration and again before each poll):

- ``cloud`` sends the user and password as the ``User`` and ``Password`` header values. httpx encodes a header
  value as ASCII (a non-ASCII password raised ``UnicodeEncodeError`` on every poll) and RFC 9110 keeps field values
  to visible ASCII (other bytes are obsolete, and how the Rainforest cloud would decode them is documented nowhere):
  both must be printable ASCII.
- the local protocols send HTTP Basic, whose ``user-pass`` RFC 7617 encodes as UTF-8 (``charset="UTF-8"``) and as
  ``aioeagle`` does (``aiohttp.encode_basic_auth``, UTF-8 by default; ``eagle100`` leaves it to ``requests``, which
  uses latin-1: the same bytes for the ASCII of a real Install Code). Any text goes, but no control character
  (RFC 7617 forbids them) and no lone surrogate (not encodable).
"""

from __future__ import annotations

import base64
import re
import unicodedata

import httpx
import orjson

from services.poller.devices import DeviceAuthError, DeviceError, DeviceUnreachableError

POST_MANAGER = "/cgi-bin/post_manager"
MAX_ANSWER_BYTES = 1 << 20  # a device_query with every variable is ~11 kB; anything near this is not an Eagle

_XML_ERROR = re.compile(rb"^\s*(?:<\?xml[^>]*>\s*)?<error\b[^>]*>(.*?)</error>", re.IGNORECASE | re.DOTALL)
_XML_TEXT = re.compile(rb"<text>(.*?)</text>", re.IGNORECASE | re.DOTALL)
_AUTH_WORDS = re.compile(
    r"auth|credential|password|passwd|unauthori[sz]ed|forbidden|login|user|cloud.?id|install.?code", re.IGNORECASE
)


_HEADER_TEXT = re.compile(r"^[\x20-\x7e]*$")
CLOUD_CREDENTIAL_RULE = "the cloud protocol sends it in an HTTP header, which takes printable ASCII only"
BASIC_CREDENTIAL_RULE = "HTTP Basic credentials must not contain control characters"


def unsendable_credential(protocol: str, user: str, password: str) -> tuple[str, str] | None:
    """Return ("user" or "password", why) when ``protocol`` cannot send that credential, else None."""
    if protocol == "cloud":
        for which, value in (("password", password), ("user", user)):
            if not _HEADER_TEXT.match(value):
                return which, CLOUD_CREDENTIAL_RULE
        return None
    # On the LAN the Basic user is the Cloud ID (a checked pattern): only the Install Code comes from the owner.
    # Cc: control characters; Cs: lone surrogates, which UTF-8 cannot encode.
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in password):
        return "password", BASIC_CREDENTIAL_RULE
    return None


def basic_authorization(cloud_id: str, install_code: str) -> str:
    """Return the HTTP Basic header value a local Eagle expects (user: Cloud ID, password: Install Code)."""
    return "Basic " + base64.b64encode(f"{cloud_id}:{install_code}".encode()).decode()


def local_url(host: str) -> httpx.URL:
    """Return the post_manager URL of an Eagle on the LAN, ``host`` being "address[:port]"."""
    return httpx.URL(f"http://{host}{POST_MANAGER}")


def error_text(content: bytes) -> str | None:
    """Return the text of an Eagle error body (XML ``<Error>`` or JSON ``{"Error": ...}``), else None."""
    head = content.lstrip()[:1]
    if head == b"<":
        match = _XML_ERROR.match(content)
        if match is None:
            return None
        inner = match.group(1)
        text = _XML_TEXT.search(inner)
        return (text.group(1) if text else inner).decode(errors="replace").strip() or "error"
    if head == b"{":
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        if isinstance(answer, dict):
            error = answer.get("Error", answer.get("error"))
            if isinstance(error, dict):
                return str(error.get("Text") or error.get("text") or error.get("Message") or error) or "error"
            if error is not None:
                return str(error) or "error"
    return None


def raise_for_error_body(content: bytes) -> None:
    """Raise the error an Eagle error body means (auth or not); return when the body is no error."""
    text = error_text(content)
    if text is None:
        return
    if _AUTH_WORDS.search(text):
        raise DeviceAuthError(f"credentials refused: {text[:200]}")
    raise DeviceError(f"device error: {text[:200]}")


class PostSender:
    """POST command bodies over the process's shared httpx client, within one overall time budget.

    With ``transport`` (the client's own connection pool) requests go straight to the pool: the client's cookie,
    redirect and auth layers do nothing for these APIs and cost about a third of a request's CPU at thousands of
    requests per second.
    """

    def __init__(
        self, http: httpx.AsyncClient, *, transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 5.0
    ) -> None:
        self.http = http
        self.transport = transport
        # httpx times each phase separately; splitting the budget keeps the whole request within timeout_s.
        t = timeout_s
        budget = httpx.Timeout(connect=0.4 * t, read=0.4 * t, write=0.1 * t, pool=0.1 * t)
        self.extensions = {"timeout": budget.as_dict()}

    async def _send(self, url: httpx.URL, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            response = await self.http.post(url, content=body, headers=headers)
            return response.status_code, response.content
        request = httpx.Request("POST", url, headers=headers, content=body, extensions=self.extensions)
        response = await self.transport.handle_async_request(request)
        try:
            return response.status_code, await response.aread()
        finally:
            await response.aclose()

    async def post(self, url: httpx.URL, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """Send one command; return the 200 body, or raise the DeviceError its status or error body means."""
        try:
            status, content = await self._send(url, headers, body)
        except httpx.TimeoutException as exc:
            raise DeviceUnreachableError("timeout") from exc
        except httpx.TransportError as exc:
            raise DeviceUnreachableError(f"transport error: {type(exc).__name__}") from exc
        if status in (401, 403):
            raise DeviceAuthError(f"credentials refused (HTTP {status})")
        if status >= 500 or status == 429:
            raise DeviceUnreachableError(f"HTTP {status}")
        if status != 200:
            raise DeviceError(f"unexpected HTTP {status}")
        if len(content) > MAX_ANSWER_BYTES:
            raise DeviceError("answer too large")
        raise_for_error_body(content)
        return content
