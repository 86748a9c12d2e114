"""Seed `kredete-documents` with deterministic text documents for a subset of the synthetic users.

Per selected user: a KYC summary (always), a credit-bureau dispute letter (about half of them) and a
compliance review stub (about a quarter). The text carries PII on purpose (names, phone numbers in E.164 and
local format, BVN/NIN and the other national identifiers, addresses, emails): ingestion must redact it.

Objects live at `users/<user-id>/<kind>/<name>.txt` with content type `text/plain; charset=utf-8`, metadata
`user-id`, `doc-type`, `title` (ASCII, no PII) and `content-sha256`, and are written with SSE-KMS. The body is
sealed under the owner's own data key (`stores.objects.sealed`: erasing the user shreds every version and
replica). Idempotent: the keys are fixed by (seed, user) and an object whose stored `content-sha256` (of the
plaintext) matches is not rewritten, so a re-run creates no new versions (the bucket is versioned and
object-locked).

The lead's `kredete seed` calls `seed_documents(settings, people, seed, console)`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console

from kredete.seed.people import Person, rng_for
from stores.objects.buckets import documents_bucket, ensure_buckets, specs_for
from stores.objects.client import ObjectStore
from stores.objects.sealed import SEALED_CONTENT_TYPE, seal

BUCKET = documents_bucket()  # the default environment's bucket
#: Share of users that get documents, and of those, the share with a dispute letter / a compliance stub.
USER_SHARE = 0.35
DISPUTE_SHARE = 0.5
COMPLIANCE_SHARE = 0.25
ANCHOR = date(2026, 1, 1)
CONCURRENCY = 16
CONTENT_TYPE = "text/plain; charset=utf-8"

BUREAU = {"NG": ("CRC Credit Bureau", "Plot 4, Ajose Adeogun Street, Victoria Island, Lagos"),
          "GH": ("XDS Data Ghana", "Ring Road Central, Accra"),
          "KE": ("Metropol CRB", "Shelter Afrique Centre, Upper Hill, Nairobi"),
          "GB": ("Experian UK", "PO Box 9000, Nottingham NG80 7WF"),
          "US": ("Equifax Information Services", "P.O. Box 740256, Atlanta, GA 30374")}
CREDITORS = {"NG": ("GTBank", "FairMoney", "Carbon"), "GH": ("GCB Bank", "Fido"), "KE": ("KCB", "M-Shwari", "Tala"),
             "GB": ("Barclaycard", "Monzo", "Klarna"), "US": ("Capital One", "Discover", "Affirm")}
ID_LABEL = {"bvn": "BVN", "nin": "NIN", "ghana_card": "Ghana Card", "kenya_national_id": "National ID",
            "national_insurance": "National Insurance number", "ssn": "SSN"}


@dataclass(frozen=True)
class SeedDocument:
    key: str
    user_id: str
    doc_type: str  # kyc_summary, dispute_letter, compliance_report
    title: str
    text: str

    @property
    def body(self) -> bytes:
        return self.text.encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def metadata(self) -> dict[str, str]:
        return {"user-id": self.user_id, "doc-type": self.doc_type, "title": self.title,
                "content-sha256": self.sha256}


def _ids(p: Person) -> str:
    return "\n".join(f"  {ID_LABEL.get(k, k)}: {v}" for k, v in sorted(p.national_ids.items()))


def _kyc(p: Person, seed: int) -> SeedDocument:
    rng = rng_for(seed, "doc-kyc", p.index)
    checked = ANCHOR - timedelta(days=rng.randint(30, 700))
    status = rng.choice(("verified", "verified", "verified", "pending review", "verified (manual)"))
    doc_kind = {"NG": "NIN slip", "GH": "Ghana Card", "KE": "National ID card", "GB": "UK passport",
                "US": "US driver licence"}[p.country]
    text = (
        f"KYC SUMMARY - Kredete customer onboarding\n"
        f"Customer: {p.full_name}\n"
        f"Date of birth: {p.date_of_birth.isoformat()}\n"
        f"Country of residence: {p.country}\n"
        f"Phone: {p.phone} (as given: {p.local_phone})\n"
        f"Email: {p.email}\n"
        f"Address:\n  " + p.address.replace("\n", "\n  ") + "\n"
        f"Identifiers:\n{_ids(p)}\n"
        f"Document checked: {doc_kind}, liveness check passed, name match {rng.randint(92, 100)}%.\n"
        f"Checked on {checked.isoformat()} by reviewer {rng.randint(100, 999)}. Status: {status}.\n"
        f"Notes: customer confirmed the phone number {p.local_phone} on a call; "
        f"tier {rng.choice((1, 2, 3))} limits apply.\n"
    )
    return SeedDocument(f"users/{p.user_id}/kyc/kyc-summary.txt", str(p.user_id), "kyc_summary",
                        "KYC summary", text)


def _dispute(p: Person, seed: int) -> SeedDocument:
    rng = rng_for(seed, "doc-dispute", p.index)
    bureau, bureau_addr = BUREAU[p.country]
    creditor = rng.choice(CREDITORS[p.country])
    sent = ANCHOR - timedelta(days=rng.randint(5, 300))
    account = "".join(str(rng.randint(0, 9)) for _ in range(10))
    amount = rng.randint(20, 900) * 100
    reason = rng.choice((
        "this account does not belong to me and I never applied for it",
        f"the balance of {amount:,} was paid in full on {(sent - timedelta(days=40)).isoformat()}",
        "the account is reported as 90 days late, but every payment was made on time",
        "the same debt is listed twice, once by the lender and once by a collection agency",
    ))
    first_id = next(iter(sorted(p.national_ids.items())), ("id", ""))
    text = (
        f"{p.full_name}\n{p.address}\n{p.phone}\n{p.email}\n\n{sent.strftime('%d %B %Y')}\n\n"
        f"{bureau}\n{bureau_addr}\n\n"
        f"Re: Dispute of an item on my credit report ({ID_LABEL.get(first_id[0], first_id[0])} {first_id[1]})\n\n"
        f"Dear Sir or Madam,\n\n"
        f"I am writing to dispute the {creditor} account ending {account[-4:]} (full number {account}) on my "
        f"credit report, because {reason}. Please investigate this item and correct or delete it within the "
        f"period the law allows, and send me an updated copy of my report.\n\n"
        f"You can reach me on {p.local_phone} or at {p.email}.\n\n"
        f"Yours faithfully,\n{p.full_name}\n"
    )
    return SeedDocument(f"users/{p.user_id}/disputes/dispute-letter-{sent.isoformat()}.txt", str(p.user_id),
                        "dispute_letter", f"Dispute letter to {bureau} ({sent.isoformat()})", text)


def _compliance(p: Person, seed: int) -> SeedDocument:
    rng = rng_for(seed, "doc-compliance", p.index)
    quarter = rng.choice(("2025-Q2", "2025-Q3", "2025-Q4"))
    trigger = rng.choice(("cumulative remittances above the tier threshold", "a sanctions-list near match on name",
                          "several transfers just below the reporting threshold", "a change of phone number "
                          "followed by a large withdrawal"))
    outcome = rng.choice(("no further action", "enhanced due diligence requested", "limits reduced pending "
                          "documents", "escalated to the MLRO"))
    text = (
        f"COMPLIANCE REVIEW (stub) - {quarter}\n"
        f"Subject: {p.full_name}, born {p.date_of_birth.isoformat()}, {p.country}\n"
        f"Identifiers on file:\n{_ids(p)}\n"
        f"Contact: {p.phone}\n"
        f"Trigger: {trigger}.\n"
        f"Review: transactions of the quarter sampled; source of funds declared as "
        f"{rng.choice(('salary', 'business income', 'family support', 'savings'))}.\n"
        f"Outcome: {outcome}.\n"
        f"Reviewer: analyst {rng.randint(10, 99)}. This is a synthetic record for testing.\n"
    )
    return SeedDocument(f"users/{p.user_id}/compliance/review-{quarter}.txt", str(p.user_id), "compliance_report",
                        f"Compliance review {quarter}", text)


def documents_for(people: Iterable[Person], seed: int) -> list[SeedDocument]:
    """The documents of a data set: pure function of (people, seed)."""
    docs: list[SeedDocument] = []
    for p in people:
        rng = rng_for(seed, "documents", p.index)
        if rng.random() >= USER_SHARE:
            continue
        docs.append(_kyc(p, seed))
        if rng.random() < DISPUTE_SHARE:
            docs.append(_dispute(p, seed))
        if rng.random() < COMPLIANCE_SHARE:
            docs.append(_compliance(p, seed))
    return docs


async def _put_if_changed(s3: Any, bucket: str, doc: SeedDocument, sem: asyncio.Semaphore, cipher: Any) -> bool:
    async with sem:
        try:
            head = await s3.head_object(Bucket=bucket, Key=doc.key)
            if (head.get("Metadata") or {}).get("content-sha256") == doc.sha256:
                return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        body, meta = seal(cipher.user(doc.user_id, create=True), doc.key, doc.body, content_type=CONTENT_TYPE,
                          metadata=doc.metadata())
        await s3.put_object(Bucket=bucket, Key=doc.key, Body=body, ContentType=SEALED_CONTENT_TYPE,
                            Metadata=meta, ServerSideEncryption="aws:kms")
        return True


async def seed_documents(settings: Any, people: Iterable[Person], seed: int, console: Console | None = None, *,
                         bucket: str | None = None, objects: ObjectStore | None = None, cipher: Any = None) -> int:
    """Put the seed documents into `bucket`; returns how many objects were written now (0 on a re-run).

    `kredete-documents` is created from its spec (object lock, SSE-KMS, policy) when missing; any other
    bucket name (tests) must exist already.
    """
    console = console or Console(stderr=True)
    prefix = getattr(settings, "s3_bucket_prefix", "kredete")
    bucket = bucket or documents_bucket(prefix)
    known_specs = {s.name: s for s in specs_for(prefix)}
    own = objects is None
    if objects is None:
        from stores.registry import connect

        objects = (await connect(("objects",), settings=settings)).objects
    assert objects is not None
    try:
        if bucket in known_specs:
            async with objects.client() as s3:
                try:
                    await s3.head_bucket(Bucket=bucket)
                    missing = False
                except ClientError:
                    missing = True
            if missing:
                await ensure_buckets(objects, specs=[known_specs[bucket]], retention_days=None)
        docs = documents_for(people, seed)
        if cipher is None:
            from stores.crypto import FieldCipher

            cipher = FieldCipher.from_settings(settings)
        if docs:
            cipher.users({d.user_id for d in docs}, create=True)  # one key-store round trip
        sem = asyncio.Semaphore(CONCURRENCY)
        async with objects.client() as s3:
            written = sum(await asyncio.gather(*(_put_if_changed(s3, bucket, d, sem, cipher) for d in docs)))
        users = len({d.user_id for d in docs})
        console.print(f"documents: {written} written, {len(docs) - written} unchanged "
                      f"({len(docs)} for {users} users in {bucket})", highlight=False)
        return written
    finally:
        if own:
            await objects.close()
