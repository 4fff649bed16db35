"""Device credentials at rest: Fernet, keyed from settings.

A real Fernet key (32 url-safe base64 bytes) is used as given. In local and test runs any other
value (such as the placeholder) is stretched into a key with SHA-256, so development works
without configuration; production insists on a real key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import orjson
from cryptography.fernet import Fernet, InvalidToken

from services.poller.settings import PollerSettings


class CredentialError(Exception):
    """Stored credentials could not be decrypted (wrong key or corrupt data)."""


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def fernet_from_settings(settings: PollerSettings) -> Fernet:
    """Return the Fernet for device credentials."""
    raw = settings.fernet_key.get_secret_value()
    if _is_fernet_key(raw):
        return Fernet(raw.encode())
    if settings.environment == "production":
        raise ValueError("HEADWATER_FERNET_KEY must be a Fernet key (Fernet.generate_key()) in production")
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()))


def encrypt_credentials(fernet: Fernet, *, user: str, password: str) -> str:
    """Encrypt an Eagle user and password into one token."""
    return fernet.encrypt(orjson.dumps({"user": user, "password": password})).decode()


def decrypt_credentials(fernet: Fernet, token: str) -> tuple[str, str]:
    """Return (user, password) from a stored token."""
    try:
        data = orjson.loads(fernet.decrypt(token.encode()))
    except (InvalidToken, orjson.JSONDecodeError) as exc:
        raise CredentialError("stored credentials cannot be decrypted") from exc
    return data["user"], data["password"]
