"""Encrypted credential store: secrets at rest are Fernet ciphertext, never clear text.

The key is ``ML_CONNECTOR_KEY`` or a key file beside the state database. ``rotate_key`` replaces the key file in a
crash-safe order (see there); ``load_or_create_key`` finishes or undoes a rotation an interruption left half done.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ml_connector.errors import MlConnectorError
from ml_connector.store.database import Database

KEY_ENV = "ML_CONNECTOR_KEY"
#: Names the engine keeps for a connection's cached tokens (``<connection>.access_token``, rotated refresh tokens):
#: not the user's secrets, so `secret list` leaves them out and `secret set` refuses them.
TOKEN_SUFFIXES = (".access_token", ".refresh_token", ".channel_token")  # + webhook channel tokens
GITIGNORE_HEADER = "# ml-connector state: the encryption key and the state database stay out of version control"


def rotation_step(step: str) -> None:
    """Called at each step boundary of a rotation; tests replace it to simulate a crash there."""


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
    key_file = db.key_file
    if key_file is None:
        return Fernet.generate_key()
    _settle_rotation(db, key_file)
    if key_file.exists():
        key = key_file.read_bytes().strip()
        recorded = _recorded_fingerprint(db)
        if recorded and recorded != fingerprint(key):
            raise CredentialError(f"the key file {key_file} is not the key the state database {db.path} was "
                                  "re-encrypted with by its last `ml-connector secret rotate-key`: restore the key "
                                  "file backed up after that rotation")
        return key
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
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a PostgreSQL state has no folder of its own
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    _ignore_beside(key_file, None if db.shared else Path(db.path))
    return key


def _aside(key_file: Path) -> Path:
    """Where a rotation writes the new key before the state is re-encrypted under it."""
    return key_file.with_name(key_file.name + ".new")


def fingerprint(key: bytes) -> str:
    """Names a key without revealing it (a hash of 32 random bytes cannot be reversed)."""
    return hashlib.sha256(key.strip()).hexdigest()[:32]


def _recorded_fingerprint(db: Database) -> str | None:
    """The key the state says its values are encrypted with (recorded by a rotation; None before the first)."""
    if not db.fetchall("SELECT 1 FROM information_schema.tables WHERE table_name = 'credential_key' "
                       "AND table_schema = current_schema()"):
        return None
    row = db.fetchone("SELECT fingerprint FROM credential_key")
    return row[0] if row else None


def _settle_rotation(db: Database, key_file: Path) -> None:
    """Finish or undo a rotation that stopped between its steps, so that key file and state agree again.

    The state records the new key's fingerprint in the transaction that re-encrypts it: when it names the key set
    aside, that transaction committed and only the swap is missing; otherwise it never committed and the key aside
    is dropped.
    """
    aside = _aside(key_file)
    if not aside.exists():
        return
    if _recorded_fingerprint(db) == fingerprint(aside.read_bytes()):
        os.replace(aside, key_file)
        _sync_folder(key_file.parent)
    else:
        aside.unlink()


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    """A rename is durable only once its folder is flushed."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ignore_beside(key_file: Path, database: Path | None) -> None:
    """A `.gitignore` in the state folder keeps the key (and the state) out of a repository; a user's own is kept."""
    ignore = key_file.parent / ".gitignore"
    if ignore.exists():
        return
    names = [key_file.name] + ([database.name, f"{database.name}.*"] if database is not None else [])
    ignore.write_text("\n".join([GITIGNORE_HEADER, *names]) + "\n")


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

    def delete(self, name: str) -> bool:
        """Remove ``name``; False when there was no such entry."""
        with self.db.transaction():
            found = self.db.fetchone("SELECT 1 FROM credentials WHERE name = ?", [name]) is not None
            self.db.execute("DELETE FROM credentials WHERE name = ?", [name])
        return found

    def names(self) -> list[str]:
        """Every stored name: the user's secrets and the engine's cached tokens."""
        return [row[0] for row in self.db.fetchall("SELECT name FROM credentials ORDER BY name")]

    def secret_names(self) -> list[str]:
        """The user's secrets only (what `store:NAME` references read), not cached tokens."""
        return [name for name in self.names() if not name.endswith(TOKEN_SUFFIXES)]

    def rotate_key(self) -> tuple[int, Path]:
        """Re-encrypt every stored value under a new key file; returns (values re-encrypted, key file).

        Crash-safe order: (1) the new key is written aside (``.key.new``), (2) every value is re-encrypted in one
        transaction that also records the new key's fingerprint, (3) the key file is replaced by the new key. An
        interruption before (2) commits leaves the old pair; after it, the next open finishes (3).
        """
        if os.environ.get(KEY_ENV):
            raise CredentialError(f"the key comes from {KEY_ENV}, not from a key file: to rotate it, store each "
                                  f"secret again under a new {KEY_ENV}, or unset it and use the key file")
        key_file = self.db.key_file
        if key_file is None:
            raise CredentialError("an in-memory state has no key file to rotate")
        rows = self.db.fetchall("SELECT name FROM credentials ORDER BY name")
        clear = {name: self.get(name) or "" for (name,) in rows}  # all readable before anything changes
        new_key = Fernet.generate_key()
        aside = _aside(key_file)
        _write_synced(aside, new_key)
        rotation_step("new key written aside")
        fernet = Fernet(new_key)
        with self.db.transaction():
            for name, value in clear.items():
                self.db.execute("UPDATE credentials SET ciphertext = ?, updated_at = now() WHERE name = ?",
                                [fernet.encrypt(value.encode()).decode(), name])
            rotation_step("values re-encrypted")
            self.db.execute("CREATE TABLE IF NOT EXISTS credential_key (fingerprint VARCHAR NOT NULL)")
            self.db.execute("DELETE FROM credential_key")
            self.db.execute("INSERT INTO credential_key VALUES (?)", [fingerprint(new_key)])
        rotation_step("state committed")
        os.replace(aside, key_file)
        _sync_folder(key_file.parent)
        self._fernet = fernet
        rotation_step("key file replaced")
        return len(clear), key_file
