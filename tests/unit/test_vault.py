"""Tokens at rest: encrypted, rotatable, and never in an error message."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.fernet import Fernet

from qjt.config import Settings
from qjt.vault import Vault, VaultError, user_id_for

TOKEN = "ibm-token-0123456789abcdef"


def key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_and_the_ciphertext_hides_the_token() -> None:
    vault = Vault([key()])
    ciphertext = vault.encrypt(TOKEN)
    assert TOKEN.encode() not in ciphertext
    assert vault.decrypt(ciphertext) == TOKEN


def test_rotation_adds_a_key_then_re_encrypts() -> None:
    old, new = key(), key()
    stored = Vault([old]).encrypt(TOKEN)
    both = Vault([new, old])
    assert both.decrypt(stored) == TOKEN  # old ciphertexts stay readable
    rotated = both.rotate(stored)
    assert Vault([new]).decrypt(rotated) == TOKEN  # the old key can now be dropped
    with pytest.raises(VaultError, match="key that encrypted it is not in QJT_FERNET_KEYS"):
        Vault([new]).decrypt(stored)


def test_missing_or_malformed_keys_say_how_to_fix_it() -> None:
    with pytest.raises(VaultError, match="QJT_FERNET_KEYS is not set; generate one with"):
        Vault.from_settings(Settings(fernet_keys=None))
    with pytest.raises(VaultError, match="key 2 of QJT_FERNET_KEYS is not a Fernet key") as error:
        Vault([key(), "not-a-key-but-a-secret"])
    assert "not-a-key-but-a-secret" not in str(error.value)


def test_settings_take_keys_newest_first() -> None:
    old, new = key(), key()
    stored = Vault([old]).encrypt(TOKEN)
    vault = Vault.from_settings(Settings(fernet_keys=f"{new}, {old}"))
    assert vault.decrypt(stored) == TOKEN
    assert Vault([new]).decrypt(vault.encrypt(TOKEN)) == TOKEN


def test_user_id_is_the_sha256_of_the_token() -> None:
    assert user_id_for(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()
