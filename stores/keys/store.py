"""Per-user data keys in a key store of their own: the local stand-in for a KMS (or Vault's transit engine).

Every user's personal data is encrypted under that user's 256-bit data key (`stores.crypto`); destroying the
key erases every copy of the ciphertext at once (crypto-shredding): database rows, credit-store documents, S3
documents with all their versions and replicas, and backups of any of them.

That only holds if the keys are not themselves in those copies. So the keys live here, in one small SQLite file
(`.local/keystore/<database>.sqlite3`, mode 0600) that is **not** part of the data backups: pgBackRest backs up
the PostgreSQL cluster (payments and FerretDB's credit store), MinIO replicates buckets, and neither holds a key.
A backup restored after an erasure finds ciphertext whose key is gone. In production the same interface maps
onto AWS KMS (data keys wrapped by a KMS key, kept in a table of their own) or Vault transit (one named key per
user, `deletion_allowed`); their own durability and deletion windows then bound when an erasure is final.

Data keys are stored wrapped (AES key wrap) by the master key of the field-encryption keyring, so the file alone
reveals nothing; rotating the master key re-wraps them here (`rewrap`) without touching any ciphertext. A
destroyed key leaves a tombstone (user id and time, no key material): a later write for that user is refused
(`KeyDestroyed`), so nothing can re-create readable personal data of an erased user by accident. SQLite runs
with `secure_delete` (freed pages are zeroed) and the WAL is truncated after a destroy, so the wrapped key does
not linger in the file either.

The store also keeps the keyed fingerprints (HMACs) of an erased user's personal data that `kredete dsr verify`
scans for, never the values themselves, beside the tombstone and outside the backups for the same reason.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from stores.errors import InvalidData, StoreConfigError, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS user_keys (
    user_id     TEXT PRIMARY KEY,
    kek_id      TEXT NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS destroyed_keys (
    user_id       TEXT PRIMARY KEY,
    destroyed_at  TEXT NOT NULL,
    request_id    TEXT
);
CREATE TABLE IF NOT EXISTS fingerprints (
    user_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    words    INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, digest)
);
"""
_CHUNK = 500  # SQLite's default limit on host parameters is 999


class KeyDestroyed(InvalidData):
    """The user's data key was destroyed (the user was erased): their ciphertext cannot be read, and no new
    personal data can be written for them."""

    store = "keystore"


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id (32 bytes each) and the id of the current one, which wraps new data keys."""

    keks: Mapping[str, bytes]
    current: str

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        return self.current, aes_key_wrap(self.keks[self.current], key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        if kek_id not in self.keks:
            raise StoreConfigError(f"the key store holds keys wrapped by master key {kek_id!r}, which the keyring "
                                   "does not have (set KREDETE_FIELD_ENCRYPTION_OLD_KEYS)", store="keystore")
        try:
            return aes_key_unwrap(self.keks[kek_id], wrapped)
        except InvalidUnwrap as exc:
            raise StoreConfigError(f"master key {kek_id!r} does not unwrap the key store's keys (wrong key?)",
                                   store="keystore") from exc


@dataclass(frozen=True)
class Fingerprint:
    """A keyed hash of one personal value of a user, normalised for its kind (see `stores.fingerprints`)."""

    kind: str
    words: int
    digest: str


def canonical_user(user_id: object) -> str:
    try:
        return str(uuid.UUID(str(user_id)))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidData("user id must be a UUID", store="keystore") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


class KeyStore:
    """Per-user 256-bit data keys in a SQLite file; safe across threads and processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path, keyring: Keyring) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    # --- connection ---------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                new = not self.path.exists()
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                if new:
                    self.path.chmod(0o600)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"key store {self.path.name} cannot be opened ({type(exc).__name__})",
                                       store="keystore") from exc
            self._conn = conn
        return self._conn

    def _run(self, fn):
        with self._lock:
            try:
                return fn(self._db())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"key store error ({type(exc).__name__}: {str(exc)[:80]})",
                                       store="keystore") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- keys ---------------------------------------------------------------------------------------
    def get(self, user_ids: Iterable[object]) -> dict[str, bytes]:
        """The data keys that exist for these users (a destroyed or never-made key is absent)."""
        ids = sorted({canonical_user(u) for u in user_ids})

        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                for uid, kek_id, wrapped in db.execute(
                        f"SELECT user_id, kek_id, wrapped FROM user_keys WHERE user_id IN ({marks})", part):
                    out[uid] = self.keyring.unwrap(kek_id, wrapped)
            return out

        return self._run(read)

    def get_or_create(self, user_ids: Iterable[object]) -> dict[str, bytes]:
        """Every user's data key, made now where missing (random, never derivable). KeyDestroyed when one of
        them was erased: no new personal data may be written for an erased user."""
        ids = sorted({canonical_user(u) for u in user_ids})

        def run(db: sqlite3.Connection) -> dict[str, bytes]:
            gone = self._destroyed(db, ids)
            if gone:
                raise KeyDestroyed(f"{len(gone)} user(s) were erased (first: {min(gone)}, at {gone[min(gone)]}); "
                                   "their data key is destroyed and no new personal data can be written for them",
                                   store="keystore")
            have = {u for part in _chunks(ids) for (u,) in db.execute(
                f"SELECT user_id FROM user_keys WHERE user_id IN ({','.join('?' * len(part))})", part)}
            missing = [u for u in ids if u not in have]
            if missing:
                at = _now()
                rows = [(u, *self.keyring.wrap(AESGCM.generate_key(bit_length=256)), at) for u in missing]
                db.execute("BEGIN IMMEDIATE")
                try:
                    # A concurrent creator may have won a row: keep its key (OR IGNORE), read it back below.
                    db.executemany("INSERT OR IGNORE INTO user_keys (user_id, kek_id, wrapped, created_at) "
                                   "VALUES (?, ?, ?, ?)", rows)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return self.get(ids)

        return self._run(run)

    def _destroyed(self, db: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            out.update(db.execute(f"SELECT user_id, destroyed_at FROM destroyed_keys WHERE user_id IN ({marks})",
                                  part).fetchall())
        return out

    def destroyed(self, user_ids: Iterable[object]) -> dict[str, str]:
        """Users among these whose key was destroyed, with the time (ISO 8601)."""
        ids = sorted({canonical_user(u) for u in user_ids})
        return self._run(lambda db: self._destroyed(db, ids))

    def destroy(self, user_ids: Iterable[object], *, request_id: str | None = None) -> int:
        """Destroy these users' data keys (idempotent); returns how many were destroyed now.

        The rows are deleted with secure_delete on (their pages zeroed) and the WAL is checkpointed and
        truncated, so no copy of a wrapped key remains in the store's files; a tombstone records the time.
        """
        ids = sorted({canonical_user(u) for u in user_ids})

        def run(db: sqlite3.Connection) -> int:
            at = _now()
            gone = 0
            db.execute("BEGIN IMMEDIATE")
            try:
                for part in _chunks(ids):
                    marks = ",".join("?" * len(part))
                    gone += db.execute(f"DELETE FROM user_keys WHERE user_id IN ({marks})", part).rowcount
                db.executemany("INSERT OR IGNORE INTO destroyed_keys (user_id, destroyed_at, request_id) "
                               "VALUES (?, ?, ?)", [(u, at, request_id) for u in ids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return gone

        return self._run(run)

    def rewrap(self) -> int:
        """Re-wrap every data key under the keyring's current master key; returns how many moved."""

        def run(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT user_id, kek_id, wrapped FROM user_keys WHERE kek_id <> ?",
                              (self.keyring.current,)).fetchall()
            moved = [(*self.keyring.wrap(self.keyring.unwrap(k, w)), u) for u, k, w in rows]
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("UPDATE user_keys SET kek_id = ?, wrapped = ? WHERE user_id = ?", moved)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return len(moved)

        return self._run(run)

    def counts(self) -> dict[str, int]:
        def run(db: sqlite3.Connection) -> dict[str, int]:
            return {"keys": db.execute("SELECT count(*) FROM user_keys").fetchone()[0],
                    "destroyed": db.execute("SELECT count(*) FROM destroyed_keys").fetchone()[0]}

        return self._run(run)

    # --- fingerprints -------------------------------------------------------------------------------
    def put_fingerprints(self, user_id: object, items: Iterable[Fingerprint]) -> int:
        uid = canonical_user(user_id)
        rows = [(uid, f.kind, f.words, f.digest) for f in items]

        def run(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO fingerprints (user_id, kind, words, digest) VALUES "
                               "(?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return len(rows)

        return self._run(run)

    def fingerprints(self, user_ids: Iterable[object]) -> dict[str, list[Fingerprint]]:
        ids = sorted({canonical_user(u) for u in user_ids})

        def run(db: sqlite3.Connection) -> dict[str, list[Fingerprint]]:
            out: dict[str, list[Fingerprint]] = {u: [] for u in ids}
            for part in _chunks(ids):
                marks = ",".join("?" * len(part))
                for uid, kind, words, digest in db.execute(
                        f"SELECT user_id, kind, words, digest FROM fingerprints WHERE user_id IN ({marks}) "
                        "ORDER BY user_id, kind, digest", part):
                    out[uid].append(Fingerprint(kind, words, digest))
            return out

        return self._run(run)


def keystore_path(settings: object) -> Path:
    """Where the settings' key store lives: KREDETE_KEYSTORE_PATH, else `.local/keystore/<database>.sqlite3`
    (one per dataset, beside the local stack's data and outside every data backup)."""
    explicit = getattr(settings, "keystore_path", None)
    if explicit:
        return Path(explicit)
    from config.paths import local_dir

    return local_dir() / "keystore" / f"{getattr(settings, 'postgres_db', 'kredete')}.sqlite3"
