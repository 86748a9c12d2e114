"""Per-user data keys in OpenBao (Vault's open-source fork): a real key-management server instead of the file.

The same interface as `stores.keys.store.KeyStore`, over OpenBao's HTTP API:

- each user has a **transit key** of their own (`<transit>/keys/user-<uuid>`, aes256-gcm96, not exportable);
- their 256-bit data key comes from `transit/datakey/plaintext/user-<uuid>` once: the plaintext is used in
  this process (and cached briefly by `FieldCipher`), the ciphertext (the data key wrapped by the user's transit
  key, which never leaves OpenBao) is kept in the KV v2 engine at `<kv>/data/user-keys/<uuid>`;
- **destroy** = `deletion_allowed`, then DELETE of the transit key (a hard delete, not OpenBao's soft delete), the
  KV entry's metadata and versions deleted, and a tombstone written at `<kv>/data/destroyed/<uuid>`. Any copy of
  the wrapped data key (a KV version, an OpenBao storage snapshot, this project's backups) is then useless:
  the key that unwraps it is gone;
- the keyed fingerprints of an erased user (`kredete dsr verify`) live at `<kv>/data/fingerprints/<uuid>`.

OpenBao's own storage snapshots are the one place a destroyed transit key survives: their retention bounds
when an erasure is final (as a KMS's deletion window does). Master-key rotation is OpenBao's (`bao operator
rotate`, transit key rotation), so `rewrap` has nothing to do here. The token needs the policy in
`OPENBAO_POLICY` below; `ensure()` mounts the engines when the token may (a dev server's root token).

The client is synchronous (httpx), like the SQLite store it replaces: `FieldCipher` calls it from sync code.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx

from stores.errors import StoreConfigError, StoreUnavailable
from stores.keys.store import Fingerprint, KeyDestroyed, canonical_user

#: What the service's token must be allowed (an OpenBao policy, HCL), for `transit`/`kredete-keys` mounts.
OPENBAO_POLICY = """
path "transit/keys/user-*"           { capabilities = ["create", "update", "read", "delete"] }
path "transit/keys/user-*/config"    { capabilities = ["update"] }
path "transit/datakey/plaintext/user-*" { capabilities = ["update"] }
path "transit/decrypt/user-*"        { capabilities = ["update"] }
path "kredete-keys/data/*"           { capabilities = ["create", "update", "read"] }
path "kredete-keys/metadata/*"       { capabilities = ["list", "read", "delete"] }
"""


def _names_a_missing_key(res: httpx.Response) -> bool:
    """Transit answers 400, not 404, for a key that does not exist (decrypt, config)."""
    try:
        errors = " ".join(res.json().get("errors", []))
    except ValueError:
        return False
    return "key not found" in errors or "no existing key" in errors


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class OpenBaoKeyStore:
    """Per-user data keys under per-user transit keys in an OpenBao server (see the module docstring)."""

    def __init__(self, url: str, token: str, *, transit: str = "transit", kv: str = "kredete-keys",
                 verify: bool | str = True, timeout: float = 10.0) -> None:
        self.transit = transit.strip("/")
        self.kv = kv.strip("/")
        self._http = httpx.Client(base_url=url.rstrip("/") + "/v1/", headers={"X-Vault-Token": token},
                                  verify=verify, timeout=timeout)
        self._lock = threading.RLock()

    @classmethod
    def from_url(cls, url: str, token: str, **kw) -> OpenBaoKeyStore:
        """`openbao+http(s)://host:port[?transit=<mount>&kv=<mount>&ca=<file>]`."""
        parts = urlsplit(url)
        if not parts.scheme.startswith("openbao+") or not parts.netloc:
            raise StoreConfigError("the key store URL must look like openbao+https://host:port", store="keystore")
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(f"{parts.scheme.removeprefix('openbao+')}://{parts.netloc}", token,
                   transit=q.get("transit", "transit"), kv=q.get("kv", "kredete-keys"),
                   verify=q.get("ca", True), **kw)

    # --- HTTP -----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, *, missing_ok: bool = False) -> dict | None:
        try:
            with self._lock:
                res = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"OpenBao key store unreachable ({type(exc).__name__})", store="keystore") \
                from exc
        if missing_ok and (res.status_code == 404 or (res.status_code == 400 and _names_a_missing_key(res))):
            return None
        if res.status_code in (401, 403):
            raise StoreConfigError(f"OpenBao refused {method} {path.split('/')[0]}/... (token or policy)",
                                   store="keystore")
        if res.status_code == 503:
            raise StoreUnavailable("OpenBao is sealed or in standby", store="keystore")
        if res.status_code >= 400:
            # OpenBao's error texts name paths and keys, never key material.
            errors = "; ".join((res.json() if res.content else {}).get("errors", []))[:200]
            raise StoreUnavailable(f"OpenBao {method} failed ({res.status_code}: {errors})", store="keystore")
        return res.json() if res.content else {}

    def _kv_read(self, path: str) -> dict | None:
        out = self._call("GET", f"{self.kv}/data/{path}", missing_ok=True)
        return None if out is None else out["data"]["data"]

    def _kv_write(self, path: str, data: dict, *, cas: int | None = None) -> bool:
        """Write; with `cas=0` only if absent (False when someone else wrote it first)."""
        body: dict = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        try:
            self._call("POST", f"{self.kv}/data/{path}", body)
        except StoreUnavailable as exc:
            if cas is not None and "check-and-set" in str(exc):
                return False
            raise
        return True

    def _kv_list(self, folder: str) -> list[str]:
        out = self._call("LIST", f"{self.kv}/metadata/{folder}/", missing_ok=True)
        return [] if out is None else list(out["data"]["keys"])

    def ensure(self) -> None:
        """Mount the transit and KV v2 engines if they are not (needs a token allowed to; idempotent)."""
        mounts = self._call("GET", "sys/mounts") or {}
        have = set(mounts.get("data", mounts))
        if f"{self.transit}/" not in have:
            self._call("POST", f"sys/mounts/{self.transit}", {"type": "transit"})
        if f"{self.kv}/" not in have:
            self._call("POST", f"sys/mounts/{self.kv}", {"type": "kv", "options": {"version": "2"}})

    def close(self) -> None:
        with self._lock:
            self._http.close()

    # --- keys -----------------------------------------------------------------------------------
    def _unwrap(self, uid: str, wrapped: str) -> bytes | None:
        out = self._call("POST", f"{self.transit}/decrypt/user-{uid}", {"ciphertext": wrapped}, missing_ok=True)
        return None if out is None else base64.b64decode(out["data"]["plaintext"])

    def _get_one(self, uid: str) -> bytes | None:
        entry = self._kv_read(f"user-keys/{uid}")
        # None as well when the transit key is gone (destroyed; the KV entry a leftover of a stopped destroy)
        return None if entry is None else self._unwrap(uid, entry["wrapped"])

    def get(self, user_ids: Iterable[object]) -> dict[str, bytes]:
        """The data keys that exist for these users (a destroyed or never-made key is absent)."""
        out: dict[str, bytes] = {}
        for uid in sorted({canonical_user(u) for u in user_ids}):
            key = self._get_one(uid)
            if key is not None:
                out[uid] = key
        return out

    def get_or_create(self, user_ids: Iterable[object]) -> dict[str, bytes]:
        """Every user's data key, made now where missing. KeyDestroyed when one of them was erased."""
        ids = sorted({canonical_user(u) for u in user_ids})
        gone = self.destroyed(ids)
        if gone:
            raise KeyDestroyed(f"{len(gone)} user(s) were erased (first: {min(gone)}, at {gone[min(gone)]}); "
                               "their data key is destroyed and no new personal data can be written for them",
                               store="keystore")
        out: dict[str, bytes] = {}
        for uid in ids:
            key = self._get_one(uid)
            if key is None:
                self._call("POST", f"{self.transit}/keys/user-{uid}", {"type": "aes256-gcm96"})  # idempotent
                made = self._call("POST", f"{self.transit}/datakey/plaintext/user-{uid}", {"bits": 256})["data"]
                if self._kv_write(f"user-keys/{uid}", {"wrapped": made["ciphertext"], "created_at": _now()},
                                  cas=0):
                    key = base64.b64decode(made["plaintext"])
                else:  # a concurrent creator won: use its key
                    key = self._get_one(uid)
            out[uid] = key
        return out

    def destroyed(self, user_ids: Iterable[object]) -> dict[str, str]:
        """Users among these whose key was destroyed, with the time (ISO 8601)."""
        out: dict[str, str] = {}
        for uid in sorted({canonical_user(u) for u in user_ids}):
            tomb = self._kv_read(f"destroyed/{uid}")
            if tomb is not None:
                out[uid] = tomb["destroyed_at"]
        return out

    def destroy(self, user_ids: Iterable[object], *, request_id: str | None = None) -> int:
        """Destroy these users' transit keys (idempotent); returns how many were destroyed now. The tombstone is
        written first, so a run stopped in between leaves a user who can no longer get a key, never the
        reverse."""
        gone = 0
        for uid in sorted({canonical_user(u) for u in user_ids}):
            if self._kv_read(f"destroyed/{uid}") is None:
                self._kv_write(f"destroyed/{uid}", {"destroyed_at": _now(), "request_id": request_id or ""})
            cfg = self._call("POST", f"{self.transit}/keys/user-{uid}/config", {"deletion_allowed": True},
                             missing_ok=True)
            if cfg is not None:
                self._call("DELETE", f"{self.transit}/keys/user-{uid}")
                gone += 1
            self._call("DELETE", f"{self.kv}/metadata/user-keys/{uid}", missing_ok=True)
        return gone

    def rewrap(self) -> int:
        """Nothing to re-wrap here: OpenBao rotates its own root and transit keys."""
        return 0

    def counts(self) -> dict[str, int]:
        return {"keys": len(self._kv_list("user-keys")), "destroyed": len(self._kv_list("destroyed"))}

    # --- fingerprints ---------------------------------------------------------------------------
    def put_fingerprints(self, user_id: object, items: Iterable[Fingerprint]) -> int:
        uid = canonical_user(user_id)
        new = [(f.kind, f.words, f.digest) for f in items]
        have = self._kv_read(f"fingerprints/{uid}") or {"items": []}
        merged = sorted({tuple(x) for x in have["items"]} | set(new))
        self._kv_write(f"fingerprints/{uid}", {"items": [list(x) for x in merged]})
        return len(new)

    def fingerprints(self, user_ids: Iterable[object]) -> dict[str, list[Fingerprint]]:
        out: dict[str, list[Fingerprint]] = {}
        for uid in sorted({canonical_user(u) for u in user_ids}):
            have = self._kv_read(f"fingerprints/{uid}") or {"items": []}
            out[uid] = [Fingerprint(k, int(w), d) for k, w, d in sorted(map(tuple, have["items"]))]
        return out
