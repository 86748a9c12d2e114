"""PrivacyService: data-subject requests across the five stores (erase, verify, export, legal hold, reapply).

Erasure rests on crypto-shredding: every user's personal data is encrypted under their own data key
(`stores.keys`, outside every data backup), so destroying it makes every copy unreadable at once, including
object-locked S3 versions, replicas and backups. Around that, each store is erased or pseudonymised by policy
(`stores.postgres.privacy.TABLE_POLICY`, the credit store, Redis, OpenSearch), step by step:

    capture -> postgres -> credit_store -> redis -> opensearch -> s3 -> key -> receipt

`capture` keeps keyed fingerprints of the user's values (never the values) for `verify`; `key` destroys the
data key; `receipt` writes a deletion receipt (no personal data) to the logs archive under a COMPLIANCE lock.
Each step is idempotent, recorded in `dsr_steps` and audited before the next starts: a run that stops (a store
down, a killed process) leaves a `failed`/`running` request that the next run of the same command continues;
a user is reported erased only when every step is done. Receipts double as the erasure list a restored backup
re-applies (`reapply`) before it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from config.settings import Settings, resolve
from services.invalidation import announce_erased
from stores.cache import CacheStore
from stores.cache import erasure as cache_erasure
from stores.crypto import FieldCipher, owner_of
from stores.errors import InvalidData, NotFound, StoreError
from stores.fingerprints import Fingerprinter, Matcher, RecordVerdict, judge
from stores.keys import Fingerprint
from stores.mongo import MongoStore
from stores.mongo import erasure as mongo_erasure
from stores.mongo.credit import REPORT_PII_PATHS, RESPONSE_PII_PATHS
from stores.mongo.encryption import UserKeyFieldEncryption, reveal_paths
from stores.objects import privacy as s3_privacy
from stores.objects.buckets import RECORD_DAYS, documents_bucket, logs_bucket
from stores.objects.client import PRESIGN_TTL_S, ObjectStore
from stores.objects.sealed import open_sealed
from stores.postgres import AuditRepository, PostgresStore
from stores.postgres.models import AuditEntry
from stores.postgres.privacy import TABLE_POLICY, PrivacyRepository, Request, Subject
from stores.postgres.users import pii_context
from stores.search import SearchStore
from stores.search import erasure as search_erasure

STEPS = ("capture", "postgres", "credit_store", "redis", "opensearch", "s3", "key", "receipt")
ACTOR_ROLE = "data_protection_officer"
MIN_PURPOSE = 10
#: A batch at least this large lists the documents bucket once instead of once per user.
_WHOLE_LISTING = 50


class DsrRefused(StoreError):
    """A request refused before anything changed (bad reason, unknown user, staff subject, legal hold)."""

    store = "dsr"


class PartialErasure(StoreError):
    """A step failed: what ran is recorded, nothing is reported erased; the same command continues it."""

    store = "dsr"

    def __init__(self, message: str, *, step: str, done: list[str], request_ids: list[str]) -> None:
        super().__init__(message, store="dsr")
        self.step, self.done, self.request_ids = step, done, request_ids


@dataclass
class ErasureResult:
    user_id: str
    request_id: str
    status: str  # "erased" | "already_erased"
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    receipt: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None


@dataclass
class StoreVerdict:
    store: str
    scanned: str = ""
    hits: int = 0
    kept: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class VerifyReport:
    user_id: str
    erased: bool
    fingerprints: int
    fingerprint_source: str
    stores: list[StoreVerdict]

    @property
    def hits(self) -> int:
        return sum(s.hits for s in self.stores)

    @property
    def passed(self) -> bool:
        return self.hits == 0 and not any(s.error for s in self.stores)


@dataclass
class ExportResult:
    request_id: str
    user_id: str
    found: bool
    key: str
    url: str
    password: str
    expires_at: datetime
    counts: dict[str, int]
    documents: int


def parse_reason(reason: str, pattern: str) -> tuple[str, str]:
    """(ticket, purpose) of a request reason: a ticket reference, then a purpose of 10+ characters."""
    text = (reason or "").strip()
    m = re.match(pattern, text)
    if not m:
        raise DsrRefused("the reason must start with a ticket reference, e.g. "
                         "'DSR-1234: customer asked to close the account and erase their data'")
    purpose = text[m.end():].lstrip(" :-\u2013\u2014")
    if len(purpose) < MIN_PURPOSE or not re.search(r"[^\W\d_]{2}", purpose):
        raise DsrRefused(f"after the ticket reference, state the purpose in at least {MIN_PURPOSE} characters")
    return m.group(0), purpose


def _safe(exc: BaseException) -> str:
    """An error message fit for a record or an audit row: the store's typed message, never a driver dump."""
    if isinstance(exc, StoreError):
        return str(exc)[:300]
    return type(exc).__name__


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class PrivacyService:
    """Data-subject requests over the five stores. Each adapter is connected on its own: a store that is down
    fails only the steps that need it (the run stops there, resumable), never the whole service at start."""

    def __init__(self, settings: Settings, *, cipher: FieldCipher, actor: str, postgres: PostgresStore,
                 mongo: MongoStore | None = None, cache: CacheStore | None = None, search: SearchStore | None = None,
                 documents: ObjectStore | None = None, archiver: ObjectStore | None = None,
                 auditor: ObjectStore | None = None, unavailable: dict[str, str] | None = None,
                 step_pause_s: float = 0.0) -> None:
        self.settings = settings
        self.cipher = cipher
        self.actor = actor
        self.postgres, self.mongo, self.cache, self.search = postgres, mongo, cache, search
        self.documents, self.archiver, self.auditor = documents, archiver, auditor
        self.unavailable = dict(unavailable or {})
        self.step_pause_s = step_pause_s
        self.repo = PrivacyRepository(postgres)
        self.audit = AuditRepository(postgres)
        if cipher.keys is None:
            raise InvalidData("data-subject requests need the key store of per-user data keys", store="dsr")
        self.keys = cipher.keys
        self.fingerprinter = Fingerprinter(cipher.fingerprint_key())

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings | None = None, *, actor: str | None = None,
                   step_pause_s: float = 0.0) -> PrivacyService:
        """Connect every store it may need; the payments database is required (it holds the requests and the
        audit trail), any other store that is down is recorded and fails only its own step."""
        import getpass

        from stores.objects.principals import objects_for
        from stores.registry import build_postgres

        s = resolve(settings)
        postgres = await build_postgres(s).connect()
        unavailable: dict[str, str] = {}

        async def attempt(name: str, make: Callable[[], Awaitable[Any]]) -> Any:
            try:
                return await make()
            except StoreError as exc:
                unavailable[name] = _safe(exc)
                return None

        mongo, cache, search = await asyncio.gather(
            attempt("credit_store", lambda: MongoStore(
                s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s,
                backend_url=s.ferretdb_reader_url.get_secret_value() if s.ferretdb_reader_url else None).connect()),
            attempt("redis", lambda: CacheStore(s.redis_url.get_secret_value(), timeout=s.connect_timeout_s)
                    .connect()),
            attempt("opensearch", lambda: SearchStore(s.opensearch_url.get_secret_value(), prefix=s.index_prefix)
                    .connect()))
        documents, archiver, auditor = (objects_for(s, p) for p in ("documents", "archiver", "auditor"))
        return cls(s, cipher=FieldCipher.from_settings(s), actor=actor or s.dsr_actor or getpass.getuser(),
                   postgres=postgres, mongo=mongo, cache=cache, search=search, documents=documents,
                   archiver=archiver, auditor=auditor, unavailable=unavailable, step_pause_s=step_pause_s)

    async def close(self) -> None:
        for store in (self.documents, self.archiver, self.auditor, self.search, self.cache, self.mongo,
                      self.postgres):
            if store is not None:
                with contextlib.suppress(Exception):
                    await store.close()
        if self.keys is not None:
            self.keys.close()

    def _need(self, name: str, store: Any) -> Any:
        if store is None:
            raise StoreError(f"{name} is unavailable ({self.unavailable.get(name, 'not connected')})", store=name)
        return store

    # --- subjects ------------------------------------------------------------------------------------
    async def subject(self, user: str, *, must_exist: bool = True) -> Subject:
        """The customer a request names; refuses a staff subject and (with `must_exist`) an unknown user."""
        try:
            uid = uuid.UUID(str(user).strip())
        except ValueError:
            role = await self.repo.staff_role_of(str(user).strip())
            if role:
                raise DsrRefused(f"{user!r} is a staff subject ({role}), not a customer: staff records follow the "
                                 "employment-records policy, not a customer data-subject request") from None
            raise DsrRefused(f"{user!r} is not a user id (a UUID) and no such subject is known") from None
        subject = await self.repo.subject(uid)
        if not subject.exists:
            role = await self.repo.staff_role_of(str(uid))
            if role:
                raise DsrRefused(f"{uid} is a staff subject ({role}), not a customer: refused")
            if must_exist:
                raise DsrRefused(f"unknown user {uid}: no such customer in the payments database")
        return subject

    async def _audit(self, action: str, decision: str, *, users: list[str], resource: str, ticket: str | None,
                     metadata: dict[str, Any]) -> None:
        meta = {**metadata, "users": len(users)}
        if len(users) > 1:
            meta["user_ids"] = users
        await self.audit.append(AuditEntry(
            actor_subject=self.actor, actor_role=ACTOR_ROLE, actor_user_id=uuid.UUID(users[0]) if len(users) == 1
            else None, action=action, resource=resource, decision=decision, reason=ticket,
            rows_returned=0, metadata=json.loads(json.dumps(meta, default=_json))))

    # --- legal hold ----------------------------------------------------------------------------------
    async def hold(self, user: str, reason: str, *, release: bool = False) -> Subject:
        ticket, _purpose = parse_reason(reason, self.settings.dsr_ticket_pattern)
        subject = await self.subject(user)
        if subject.deleted_at is not None and not release:
            raise DsrRefused(f"{subject.user_id} was already erased; nothing to hold")
        await self.repo.set_legal_hold(subject.user_id, None if release else reason.strip()[:500])
        await self._audit("dsr.legal_hold.release" if release else "dsr.legal_hold.set", "allowed",
                          users=[str(subject.user_id)], resource=f"user:{subject.user_id}", ticket=ticket,
                          metadata={})
        return await self.repo.subject(subject.user_id)

    # --- erase ---------------------------------------------------------------------------------------
    async def erase(self, users: Iterable[str], reason: str, *,
                    on_step: Callable[[str, dict[str, Any], float], None] | None = None) -> list[ErasureResult]:
        """Erase these customers everywhere (one batch); already-erased ones are a no-op. Refuses before any
        change on a bad reason, an unknown or staff subject, or a user under legal hold. PartialErasure when a
        step fails (rerun to continue)."""
        ticket, _purpose = parse_reason(reason, self.settings.dsr_ticket_pattern)
        subjects: dict[str, Subject] = {}
        for u in users:
            s = await self.subject(u)
            subjects[str(s.user_id)] = s
        if not subjects:
            raise DsrRefused("no user given")
        held = [u for u, s in subjects.items() if s.legal_hold_at is not None]
        if held:
            s = subjects[held[0]]
            raise DsrRefused(f"{len(held)} user(s) under legal hold, e.g. {held[0]} (since "
                             f"{s.legal_hold_at:%Y-%m-%d}: {(s.legal_hold_reason or '')[:60]}); release the hold "
                             "first (`kredete dsr release`); nothing was erased")
        results: dict[str, ErasureResult] = {}
        open_reqs: dict[str, Request] = {}
        for uid in subjects:
            last = await self.repo.last_erasure(uuid.UUID(uid))
            if last is not None and last.status == "done":
                results[uid] = ErasureResult(uid, str(last.id), "already_erased", last.steps,
                                             last.result.get("receipt", {}), last.finished_at)
            elif last is not None:
                await self.repo.reopen(last.id)
                open_reqs[uid] = last
            else:
                open_reqs[uid] = await self.repo.open_request("erase", uuid.UUID(uid), ticket, reason.strip(),
                                                              self.actor)
        if not open_reqs:
            await self._audit("dsr.erase.repeat", "allowed", users=list(subjects), resource="dsr:repeat",
                              ticket=ticket, metadata={"already_erased": len(results)})
            return [results[u] for u in subjects]
        batch = str(uuid.uuid4()) if len(open_reqs) > 1 else str(next(iter(open_reqs.values())).id)
        async with self._exclusive():
            done_now = await self._run_steps(open_reqs, ticket, batch, on_step)
        for uid, req in open_reqs.items():
            final = await self.repo.last_erasure(uuid.UUID(uid))
            results[uid] = ErasureResult(uid, str(req.id), "erased", final.steps if final else {},
                                         done_now.get("receipt", {}), final.finished_at if final else None)
        return [results[u] for u in subjects]

    @contextlib.asynccontextmanager
    async def _exclusive(self):
        """One erasure run at a time in the cluster: a session advisory lock on a connection held for the run
        (released by the server if the process dies)."""
        async with self.postgres.connection() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('kredete.dsr.erase'))"):
                raise DsrRefused("another erasure is running; retry when it has finished")
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock(hashtext('kredete.dsr.erase'))")

    async def _run_steps(self, reqs: dict[str, Request], ticket: str, batch: str,
                         on_step: Callable[[str, dict[str, Any], float], None] | None) -> dict[str, Any]:
        done_now: dict[str, Any] = {}
        completed: list[str] = []
        for step in STEPS:
            pending = {u: r for u, r in reqs.items() if (r.steps.get(step) or {}).get("status") != "done"}
            if not pending:
                completed.append(step)
                continue
            started = datetime.now(UTC)
            t0 = time.perf_counter()
            try:
                detail = await getattr(self, f"_step_{step}")(pending, ticket, batch)
            except Exception as exc:
                msg = _safe(exc)
                for r in pending.values():
                    await self.repo.record_step(r.id, step, "failed", started, {}, msg)
                    await self.repo.finish(r.id, "failed", error=f"{step}: {msg}")
                await self._audit(f"dsr.erase.{step}", "error", users=list(pending), resource=f"dsr:{batch}",
                                  ticket=ticket, metadata={"error": msg})
                raise PartialErasure(f"erasure stopped at step '{step}': {msg}. Steps done: "
                                     f"{', '.join(completed) or 'none'}. Nothing is reported erased; run the same "
                                     "command again to continue", step=step, done=completed,
                                     request_ids=[str(r.id) for r in pending.values()]) from exc
            for r in pending.values():
                await self.repo.record_step(r.id, step, "done", started, detail)
            await self._audit(f"dsr.erase.{step}", "allowed", users=list(pending), resource=f"dsr:{batch}",
                              ticket=ticket, metadata=detail)
            if step == "receipt":
                done_now["receipt"] = detail
                for r in pending.values():
                    await self.repo.finish(r.id, "done", result={"receipt": detail})
            completed.append(step)
            if on_step is not None:
                on_step(step, detail, time.perf_counter() - t0)
            if self.step_pause_s:
                await asyncio.sleep(self.step_pause_s)
        return done_now

    # --- the steps -----------------------------------------------------------------------------------
    async def _step_capture(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        """Fingerprints of every personal value, before anything goes (kept in the key store)."""
        total: dict[str, int] = {}
        for uid in reqs:
            fps = await self.capture(uid)
            if fps is None:
                continue  # already erased in the payments database (a rerun): fingerprints were kept then
            self.keys.put_fingerprints(uid, fps)
            for f in fps:
                total[f.kind] = total.get(f.kind, 0) + 1
        return {"fingerprints": total}

    async def capture(self, uid: str) -> list[Fingerprint] | None:
        """The user's fingerprints from their live, decrypted values; None when nothing is left to read."""
        rows = await self.repo.personal_ciphertexts(uuid.UUID(uid))
        user = rows["user"]
        if user["full_name_enc"] is None and user["email_enc"] is None and not rows["kyc"]:
            return None
        cipher = self.cipher.user(uid)
        values: dict[str, list[str | None]] = {k: [] for k in ("email", "phone", "document", "name", "address",
                                                             "dob")}
        for col, kind in (("email", "email"), ("phone", "phone"), ("full_name", "name"), ("address", "address"),
                          ("date_of_birth", "dob")):
            token = user[f"{col}_enc"]
            if token:
                values[kind].append(self._open(cipher, token, pii_context(col, uid)))
        for k in rows["kyc"]:
            values["document"].append(self._open(cipher, k["document_number_enc"],
                                                 f"kyc_records.document_number|{k['id']}"))
        for m in rows["payment_methods"]:
            secret = self._open(cipher, m["details_enc"], f"payment_methods.details|{m['id']}")
            values["document"] += [secret, *(re.findall(r"\d{6,}", secret or ""))]
        if self.mongo is not None:
            values["document"] += await self._credit_identifiers(uid)
        fps = self.fingerprinter.capture(values, region=user["country"])
        # leaderboard handles: pseudonyms in Redis boards, unlinkable once the opt-in row is gone; removed too
        fps += [Fingerprint("handle", 0, h) for h in rows["handles"]]
        # the blind indexes themselves: `verify` checks that no row still matches them
        for digest in (user["email_bidx"], user["phone_bidx"], *(k["document_number_bidx"] for k in rows["kyc"]),
                       *(m["fingerprint_bidx"] for m in rows["payment_methods"])):
            if digest:
                fps.append(Fingerprint("bidx", 0, digest))
        return fps

    @staticmethod
    def _open(cipher: Any, token: str | None, context: str) -> str | None:
        if not token:
            return None
        if owner_of(token) is None:
            return None  # an older enc1 value: not under this user's key
        try:
            return cipher.decrypt(token, context)
        except InvalidData:
            return None

    async def _credit_identifiers(self, uid: str) -> list[str]:
        """Account and identity numbers the credit store holds encrypted for the user."""
        out: list[str] = []
        enc = UserKeyFieldEncryption(self.cipher)
        for coll, paths in (("credit_reports", REPORT_PII_PATHS), ("bureau_responses", RESPONSE_PII_PATHS)):
            async for doc in self.mongo.db[coll].find({"user_id": {"$eq": uid}}):
                try:
                    await reveal_paths(enc, doc, paths, coll, reveal=True)
                except InvalidData:
                    continue
                subj = doc.get("subject") or {}
                out += [subj.get(k) for k in ("ssn", "bvn", "nin", "phone") if subj.get(k)]
                out += [a.get("account_number") for a in doc.get("accounts") or [] if a.get("account_number")]
        return out

    async def _step_postgres(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        return {"rows": await self.repo.erase([uuid.UUID(u) for u in reqs])}

    async def _matchers(self, uids: Iterable[str]) -> dict[str, Matcher]:
        return {u: self.fingerprinter.matcher(fps) for u, fps in self.keys.fingerprints(uids).items()}

    async def _erase_credit_store(self, mongo: MongoStore, uids: list[str]) -> dict[str, int]:
        """The users' documents, and the AI records that mention them (read from FerretDB's tables when the
        store has the reader's keyset, else through the wire protocol)."""
        return await mongo_erasure.erase(mongo.db, uids, await self._matchers(uids),
                                         raw=mongo.keyset.documents if mongo.keyset else None)

    async def _step_credit_store(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        return {"documents": await self._erase_credit_store(self._need("credit_store", self.mongo), list(reqs))}

    async def _step_redis(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        cache = self._need("redis", self.cache)
        out = await cache_erasure.erase(cache.redis, list(reqs), members=self._handles(reqs))
        await announce_erased(cache, list(reqs), f"dsr-erase:{batch}")
        return out

    def _handles(self, uids: Iterable[str]) -> dict[str, list[str]]:
        """Pseudonymous leaderboard handles of the users (captured before their opt-in rows went)."""
        return {u: [f.digest for f in fps if f.kind == "handle"] for u, fps in self.keys.fingerprints(uids).items()}

    async def _step_opensearch(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        search = self._need("opensearch", self.search)
        return {"documents": await search_erasure.erase(search, list(reqs))}

    async def _step_s3(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        """Count what the key covers: every version of the user's documents, on the primary and the DR
        replica (object-locked: shredded by the key step, not deleted)."""
        docs = self._need("s3", self.documents)
        bucket = documents_bucket(self.settings.s3_bucket_prefix)
        out: dict[str, int] = {"primary_versions": 0, "dr_versions": 0}
        sites = [("primary_versions", None)] + ([("dr_versions", self.settings.s3_dr_url)]
                                                if self.settings.s3_dr_url else [])
        for label, endpoint in sites:
            try:
                if len(reqs) >= _WHOLE_LISTING:
                    found = await s3_privacy.versions(docs, bucket, "users/", endpoint=endpoint)
                    mine = {s3_privacy.user_prefix(u) for u in reqs}
                    out[label] = sum(1 for v in found if v.key[:len("users/") + 37] in mine)
                else:
                    for u in reqs:
                        out[label] += len(await s3_privacy.versions(docs, bucket, s3_privacy.user_prefix(u),
                                                                    endpoint=endpoint))
            except StoreError as exc:
                if endpoint is None:
                    raise
                out["dr_unreachable"] = 1  # the replica is shredded by the same key; counted when reachable
                _ = exc
        return out

    async def _step_key(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        before = self.keys.destroyed(reqs)
        n = self.keys.destroy(reqs, request_id=batch)
        self.cipher.forget(reqs)
        after = self.keys.destroyed(reqs)
        return {"destroyed_now": n, "destroyed_before": len(before),
                "destroyed_at": max(after.values()) if after else None}

    async def _step_receipt(self, reqs: dict[str, Request], ticket: str, batch: str) -> dict[str, Any]:
        """The deletion receipt: what was erased where and when, under a COMPLIANCE lock; no personal data (user
        ids are random pseudonyms, kept so a restore can re-apply the erasure)."""
        archiver = self._need("s3", self.archiver)
        at = datetime.now(UTC)
        subjects = []
        for uid in reqs:
            req = await self.repo.last_erasure(uuid.UUID(uid))
            subjects.append({"user_id": uid, "request_id": str(req.id) if req else None,
                             "steps": {k: {"at": v["finished_at"], "detail": v["detail"]}
                                       for k, v in (req.steps if req else {}).items() if v["status"] == "done"}})
        receipt = {
            "kind": "kredete.deletion-receipt/v1", "batch": batch, "ticket": ticket, "requested_by": self.actor,
            "completed_at": at, "subjects": subjects,
            "policy": {t: a for t, (a, _why) in TABLE_POLICY.items() if a != "none"},
            "crypto_shredding": "each subject's data key destroyed in the key store: their encrypted columns, "
                                "credit-store fields and S3 documents (every version, replica and backup) are "
                                "unreadable",
            "retained": ["transactions, ledger, FX orders, stablecoin transfers, subscriptions: pseudonymised "
                         "financial records (no personal field)", "audit_logs: hash-chained rows (ids, digests)",
                         "S3 document versions under COMPLIANCE lock: ciphertext whose key is destroyed"],
        }
        key = s3_privacy.receipt_key(batch, at)
        bucket = logs_bucket(self.settings.s3_bucket_prefix)
        body = json.dumps(receipt, default=_json, indent=1, sort_keys=True).encode()
        version = await s3_privacy.put_record(archiver, bucket, key, body)
        return {"bucket": bucket, "key": key, "version_id": version,
                "retain_until": (at + timedelta(days=RECORD_DAYS)).date().isoformat(), "subjects": len(subjects)}

    # --- reapply (after a restore) -------------------------------------------------------------------
    async def reapply(self) -> dict[str, Any]:
        """Re-erase every subject of the deletion receipts in the (restored) stores this service points at, and
        make sure their keys are destroyed. Idempotent; run by every restore before the data serves."""
        reader = self._need("s3", self.auditor)
        receipts = await s3_privacy.receipts(reader, logs_bucket(self.settings.s3_bucket_prefix))
        ids = sorted({s["user_id"] for r in receipts for s in r.get("subjects", [])})
        present = [u for u in ids if (await self.repo.subject(uuid.UUID(u))).exists]
        out: dict[str, Any] = {"receipts": len(receipts), "subjects": len(ids), "present_here": len(present)}
        if present:
            out["postgres"] = await self.repo.erase([uuid.UUID(u) for u in present])
            if self.mongo is not None:
                out["credit_store"] = await self._erase_credit_store(self.mongo, present)
            if self.cache is not None:
                out["redis"] = await cache_erasure.erase(self.cache.redis, present, members=self._handles(present))
                await announce_erased(self.cache, present, "dsr-reapply")
            if self.search is not None:
                out["opensearch"] = await search_erasure.erase(self.search, present)
        out["keys_destroyed_now"] = self.keys.destroy(ids, request_id="reapply") if ids else 0
        self.cipher.forget(ids)
        await self._audit("dsr.reapply", "allowed", users=present or ["00000000-0000-0000-0000-000000000000"],
                          resource="dsr:reapply", ticket=None, metadata={k: v for k, v in out.items()
                                                                         if not isinstance(v, dict)})
        return out

    # --- verify --------------------------------------------------------------------------------------
    async def verify(self, user: str) -> VerifyReport:
        """Raw scans of every store for the user's id and for their values (by fingerprint); hits per store."""
        subject = await self.subject(user, must_exist=False)
        uid = str(subject.user_id)
        last = await self.repo.last_erasure(subject.user_id)
        if not subject.exists and last is None:
            raise DsrRefused(f"unknown user {uid}: no such customer and no erasure on record")
        fps = self.keys.fingerprints([uid])[uid]
        source = "captured at erasure (key store)"
        if not fps and subject.exists and subject.deleted_at is None:
            fps, source = (await self.capture(uid) or []), "captured now from the live values"
        matcher = self.fingerprinter.matcher(fps)
        bidx = [f.digest for f in fps if f.kind == "bidx"]
        # the key store is the truth: a data key this process cached before another process erased the user
        # must not make the user's sealed objects count as readable
        self.cipher.forget([uid])
        verdicts = []
        for name, fn in (("postgres", self._scan_postgres), ("credit_store", self._scan_mongo),
                         ("redis", self._scan_redis), ("opensearch", self._scan_search), ("s3", self._scan_s3),
                         ("keystore", self._scan_keys)):
            try:
                verdicts.append(await fn(uid, matcher, bidx))
            except Exception as exc:
                verdicts.append(StoreVerdict(name, error=_safe(exc)))
        return VerifyReport(uid, last is not None and last.status == "done", len(fps), source, verdicts)

    async def _scan_postgres(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        v = StoreVerdict("postgres")
        rows = tables = 0
        for table, uuids, texts in await self.repo.tables():
            tables += 1
            kept_policy = TABLE_POLICY.get(table, ("erase", ""))[0] in ("keep", "pseudonymise")
            counts = {"id_refs": 0, "pii": 0, "weak_unattributed": 0}
            async for id_ref, values in self.repo.scan_rows(table, uuids, texts, uuid.UUID(uid)):
                rows += 1
                found = judge(values, uid, matcher)
                verdict = RecordVerdict(id_ref or found.id_ref, found.kinds)
                counts["id_refs"] += verdict.id_ref
                counts["pii"] += verdict.attributable
                counts["weak_unattributed"] += bool(verdict.kinds) and not verdict.attributable
            if counts["id_refs"]:
                if kept_policy:
                    v.kept += counts["id_refs"]
                    v.details.setdefault("kept_by_policy", {})[table] = counts["id_refs"]
                else:
                    v.hits += counts["id_refs"]
                    v.details.setdefault("id_refs", {})[table] = counts["id_refs"]
            if counts["pii"]:
                v.hits += counts["pii"]
                v.details.setdefault("pii", {})[table] = counts["pii"]
            if counts["weak_unattributed"]:
                v.details.setdefault("weak_unattributed", {})[table] = counts["weak_unattributed"]
        blind = {t: n for t, n in (await self.repo.blind_index_hits(bidx)).items() if n}
        if blind:
            v.hits += sum(blind.values())
            v.details["blind_index_matches"] = blind
        v.scanned = f"{tables} tables, {rows:,} rows with text or ids"
        return v

    async def _scan_mongo(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        mongo = self._need("credit_store", self.mongo)
        v = StoreVerdict("credit_store")
        scanned = await mongo_erasure.scan(mongo.db, uid, matcher)
        for coll, c in scanned.items():
            if c["id_refs"] or c["pii"]:
                v.hits += max(c["id_refs"], c["pii"])
                v.details[coll] = {k: n for k, n in c.items() if k != "documents" and n}
            elif c["weak_unattributed"]:
                v.details.setdefault("weak_unattributed", {})[coll] = c["weak_unattributed"]
        v.scanned = f"{len(scanned)} collections, {sum(c['documents'] for c in scanned.values()):,} documents"
        return v

    async def _scan_redis(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        cache = self._need("redis", self.cache)
        c = await cache_erasure.scan(cache.redis, uid, matcher, members=self._handles([uid])[uid])
        v = StoreVerdict("redis", scanned=f"{c['keys']:,} keys (names and values)")
        v.hits = max(c["id_refs"], c["pii"])
        v.details = {k: n for k, n in c.items() if k != "keys" and n}
        return v

    async def _scan_search(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        search = self._need("opensearch", self.search)
        scanned = await search_erasure.scan(search, uid, matcher)
        v = StoreVerdict("opensearch", scanned=f"{len(scanned)} indices, "
                                               f"{sum(c['documents'] for c in scanned.values()):,} documents")
        for index, c in scanned.items():
            if c["id_refs"] or c["pii"]:
                v.hits += max(c["id_refs"], c["pii"])
                v.details[index] = {k: n for k, n in c.items() if k != "documents" and n}
        return v

    async def _scan_s3(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        docs = self._need("s3", self.documents)
        bucket = documents_bucket(self.settings.s3_bucket_prefix)
        v = StoreVerdict("s3")
        parts = []
        for site, endpoint in [("primary", None)] + ([("dr", self.settings.s3_dr_url)] if self.settings.s3_dr_url
                                                     else []):
            try:
                found = await s3_privacy.versions(docs, bucket, s3_privacy.user_prefix(uid), endpoint=endpoint)
                c = await s3_privacy.readable(docs, bucket, found, self.cipher, endpoint=endpoint)
            except StoreError as exc:
                if endpoint is None:
                    raise
                v.notes.append(f"dr: not scanned ({_safe(exc)})")
                continue
            v.details[site] = {k: n for k, n in c.items() if n}
            v.hits += c["sealed_readable"] + c["plaintext"]
            parts.append(f"{site} {c['versions']} versions")
        v.scanned = f"{bucket} users/{uid[:8]}…/: " + ", ".join(parts)
        return v

    async def _scan_keys(self, uid: str, matcher: Matcher, bidx: list[str]) -> StoreVerdict:
        have = self.keys.get([uid])
        gone = self.keys.destroyed([uid])
        v = StoreVerdict("keystore", scanned="the user's data key")
        if uid in have:
            v.hits = 1
            v.details["data_key"] = "present (readable ciphertext everywhere)"
        else:
            v.details["data_key"] = f"destroyed at {gone[uid]}" if uid in gone else "none"
        return v

    # --- export --------------------------------------------------------------------------------------
    async def export(self, user: str, reason: str) -> ExportResult:
        """All of the user's data as JSON plus their documents, in an AES-256 zip in the documents bucket, handed
        out as a 15-minute presigned URL and a one-time password (never stored); audited."""
        import pyzipper

        ticket, _purpose = parse_reason(reason, self.settings.dsr_ticket_pattern)
        subject = await self.subject(user, must_exist=False)
        uid = str(subject.user_id)
        req = await self.repo.open_request("export", subject.user_id, ticket, reason.strip(), self.actor)
        try:
            data, files = await self._collect(uid, subject)
            counts = {k: len(v) for k, v in data.items() if isinstance(v, list | dict)}
            password = secrets.token_urlsafe(24)
            buf = io.BytesIO()
            with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_DEFLATED,
                                     encryption=pyzipper.WZ_AES) as z:
                z.setpassword(password.encode())
                z.setencryption(pyzipper.WZ_AES, nbits=256)
                z.writestr("data.json", json.dumps({"user_id": uid, "found": subject.exists, "request_id": str(req.id),
                                                    "ticket": ticket, "generated_at": datetime.now(UTC), **data},
                                                   default=_json, indent=1, sort_keys=True))
                for name, body in files.items():
                    z.writestr(f"documents/{name}", body)
            docs = self._need("s3", self.documents)
            bucket = documents_bucket(self.settings.s3_bucket_prefix)
            key = f"users/{uid}/exports/{req.id}.zip"
            await docs.put(bucket, key, buf.getvalue(), content_type="application/zip",
                           metadata={"user-id": uid, "doc-type": "dsr_export", "title": f"Data export {req.id}"})
            url = docs.presigned_get(bucket, key, PRESIGN_TTL_S)
            expires = datetime.now(UTC) + timedelta(seconds=PRESIGN_TTL_S)
            detail = {"key": key, "counts": counts, "documents": len(files), "bytes": len(buf.getvalue()),
                      "found": subject.exists}
            await self.repo.record_step(req.id, "export", "done", datetime.now(UTC), detail)
            await self.repo.finish(req.id, "done", result=detail)
            await self._audit("dsr.export", "allowed", users=[uid], resource=f"dsr:{req.id}", ticket=ticket,
                              metadata=detail)
        except Exception as exc:
            await self.repo.finish(req.id, "failed", error=_safe(exc))
            await self._audit("dsr.export", "error", users=[uid], resource=f"dsr:{req.id}", ticket=ticket,
                              metadata={"error": _safe(exc)})
            raise
        return ExportResult(str(req.id), uid, subject.exists, key, url, password, expires, counts, len(files))

    async def _collect(self, uid: str, subject: Subject) -> tuple[dict[str, Any], dict[str, bytes]]:
        if not subject.exists:
            return {"payments": {}, "credit_store": {}, "cache": {}, "documents": []}, {}
        rows = await self.repo.export_rows(subject.user_id)
        try:
            cipher = self.cipher.user(uid)
        except InvalidData:
            cipher = None  # erased: nothing encrypted is left to read
        for r in rows["users"]:
            for col in ("full_name", "email", "phone", "date_of_birth", "address"):
                token = r.pop(f"{col}_enc", None)
                r[col] = self._open(cipher, token, pii_context(col, uid)) if cipher else None
            for col in ("email_bidx", "phone_bidx"):
                r.pop(col, None)
        for r in rows["kyc_records"]:
            r["document_number"] = self._open(cipher, r.pop("document_number_enc"),
                                              f"kyc_records.document_number|{r['id']}") if cipher else None
            r.pop("document_number_bidx", None)
        for r in rows["payment_methods"]:
            r["details"] = self._open(cipher, r.pop("details_enc"), f"payment_methods.details|{r['id']}") \
                if cipher else None
            r.pop("fingerprint_bidx", None)
        credit: dict[str, Any] = {}
        if self.mongo is not None:
            enc = UserKeyFieldEncryption(self.cipher)

            async def reveal(coll: str, doc: dict[str, Any]) -> None:
                paths = {"credit_reports": REPORT_PII_PATHS, "bureau_responses": RESPONSE_PII_PATHS}.get(coll, ())
                with contextlib.suppress(InvalidData):
                    await reveal_paths(enc, doc, paths, coll, reveal=True)

            credit = await mongo_erasure.export(self.mongo.db, uid, reveal)
        cache = await cache_erasure.export(self.cache.redis, uid) if self.cache is not None else {}
        files: dict[str, bytes] = {}
        listed: list[str] = []
        if self.documents is not None:
            bucket = documents_bucket(self.settings.s3_bucket_prefix)
            prefix = s3_privacy.user_prefix(uid)
            for key in await self.documents.list_keys(bucket, prefix, limit=10_000):
                if "/exports/" in key:
                    continue
                listed.append(key[len(prefix):])
                head = await self.documents.head(bucket, key)
                body = await self.documents.get(bucket, key)
                meta = head.get("Metadata") or {}
                try:
                    files[key[len(prefix):]] = open_sealed(self.cipher, key, body, meta) if meta.get("sealed") \
                        else body
                except (InvalidData, NotFound):
                    continue
        return {"payments": rows, "credit_store": credit, "cache": cache, "documents": listed}, files
