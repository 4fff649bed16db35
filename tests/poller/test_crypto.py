"""The Fernet key for device credentials: real keys as given, placeholders stretched only outside production."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from services.poller.crypto import decrypt_credentials, encrypt_credentials, fernet_from_settings
from services.poller.settings import PollerSettings


def test_placeholder_key_is_stretched_deterministically_for_local_runs(
    poller_settings: Callable[..., PollerSettings],
) -> None:
    settings = poller_settings()
    token = encrypt_credentials(fernet_from_settings(settings), user="u", password="p")
    assert decrypt_credentials(fernet_from_settings(poller_settings()), token) == ("u", "p")


def test_real_fernet_key_is_used_as_given_and_production_refuses_others(
    poller_settings: Callable[..., PollerSettings],
) -> None:
    key = Fernet.generate_key()
    production = poller_settings(environment="production", fernet_key=SecretStr(key.decode()))
    token = encrypt_credentials(fernet_from_settings(production), user="u", password="p")
    assert Fernet(key).decrypt(token.encode())
    with pytest.raises(ValueError, match="Fernet key"):
        fernet_from_settings(poller_settings(environment="production", fernet_key=SecretStr("not-a-fernet-key")))
