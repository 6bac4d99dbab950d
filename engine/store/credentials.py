"""Encrypted credential store: secrets at rest are Fernet ciphertext, never clear text."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ml_connector.errors import MlConnectorError
from ml_connector.store.database import Database

KEY_ENV = "ML_CONNECTOR_KEY"


class CredentialError(MlConnectorError):
    """A credential cannot be read: the workspace key is unusable, or the secret was stored with another key."""


def load_or_create_key(db: Database) -> bytes:
    """The encryption key: from ``ML_CONNECTOR_KEY``, else a 0600 key file beside the state database.

    A key file is made only for a state that holds no encrypted values: a lost key file replaced by a new key
    would turn every stored secret and token into ciphertext nothing can read, so that is refused with a way out.
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return from_env.encode()
    if db.path == ":memory:":
        return Fernet.generate_key()
    key_file = Path(db.path).with_suffix(".key")
    if key_file.exists():
        return key_file.read_bytes().strip()
    names = [row[0] for row in db.fetchall("SELECT name FROM credentials ORDER BY name")]
    if names:
        count = f"{len(names)} encrypted value{'s' if len(names) > 1 else ''}"
        listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise CredentialError(
            f"the key file {key_file} is missing, but the state database {db.path} holds {count} ({listed}) that "
            f"only that key can read, so no new key was made. Restore the key file from a "
            f"backup, or set {KEY_ENV} to the key they were stored with. To start over instead, set {KEY_ENV} to a "
            "new key (Fernet.generate_key()), store each store: secret again with `ml-connector secret set NAME` "
            "and re-authorise OAuth connections")
    key = Fernet.generate_key()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class Credentials:
    """Repository for named secrets, encrypted with the workspace key."""

    def __init__(self, db: Database, key: bytes) -> None:
        self.db = db
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise CredentialError(f"the workspace key ({KEY_ENV}, or the .key file beside the state database) is "
                                  "not a Fernet key (32 url-safe base64-encoded bytes)") from exc

    def put(self, name: str, value: str) -> None:
        """Store a secret atomically (one upsert statement)."""
        token = self._fernet.encrypt(value.encode()).decode()
        self.db.execute(
            "INSERT INTO credentials (name, ciphertext, updated_at) VALUES (?, ?, now()) "
            "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = now()", [name, token])

    def get(self, name: str) -> str | None:
        row = self.db.fetchone("SELECT ciphertext FROM credentials WHERE name = ?", [name])
        if row is None:
            return None
        try:
            return self._fernet.decrypt(row[0].encode()).decode()
        except InvalidToken as exc:
            raise CredentialError(
                f"credential {name!r} cannot be decrypted with this workspace key ({KEY_ENV}, or the .key file "
                f"beside the state database): set the key it was stored with, or store it again with "
                f"`ml-connector secret set {name}`") from exc

    def delete(self, name: str) -> None:
        self.db.execute("DELETE FROM credentials WHERE name = ?", [name])

    def names(self) -> list[str]:
        return [row[0] for row in self.db.fetchall("SELECT name FROM credentials ORDER BY name")]
