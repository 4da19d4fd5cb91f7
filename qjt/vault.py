"""IBM tokens at rest: Fernet encryption with rotatable keys (`QJT_FERNET_KEYS`).

Keys are comma-separated, newest first. Encryption uses the newest; decryption tries
each, so adding a new key in front keeps old ciphertexts readable until `rotate`
re-encrypts them. No error message ever contains a token or a key.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from qjt.config import Settings
from qjt.telemetry import register_secret

GENERATE_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


class VaultError(RuntimeError):
    """Keys missing or malformed, or a ciphertext no configured key can read."""


def user_id_for(token: str) -> str:
    """A user's id: the SHA-256 (hex) of their IBM token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Vault:
    """Encrypts and decrypts IBM tokens."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise VaultError(f"QJT_FERNET_KEYS is not set; {GENERATE_HINT}")
        fernets = []
        for position, key in enumerate(keys, start=1):
            register_secret(key)
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise VaultError(
                    f"key {position} of QJT_FERNET_KEYS is not a Fernet key (32 url-safe "
                    f"base64-encoded bytes); {GENERATE_HINT}"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        raw = settings.fernet_keys.get_secret_value() if settings.fernet_keys else ""
        return cls([k.strip() for k in raw.split(",") if k.strip()])

    def encrypt(self, token: str) -> bytes:
        register_secret(token)
        return self._fernet.encrypt(token.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            token = self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise VaultError(
                "cannot decrypt a stored IBM token: the key that encrypted it is not in "
                "QJT_FERNET_KEYS (keep old keys after the new one until `qjt account rotate-keys`)"
            ) from None
        register_secret(token)
        return token

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same token re-encrypted with the newest key."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise VaultError(
                "cannot rotate a stored IBM token: no configured key reads it"
            ) from None
