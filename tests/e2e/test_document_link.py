"""get_document_link on the real stack: a customer gets a 15-minute link to their own document (by its path or by
the source_id search_knowledge cites); documents are sealed under the customer's key, so the link names the MCP
HTTP server's download route, which serves the PLAINTEXT of exactly that document version. A forged, altered or
expired token is refused (403), another customer's document is answered like a missing one, an erased owner's
document is gone (410), staff are denied, and every call and every download is audited."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.e2e.conftest import http_session, stdio_session, token_for
from tests.e2e.test_mcp_server import audit_rows_since, error_text, max_audit_id, payload

NOT_IN_SCOPE = "no such record in your scope"
DOWNLOAD = "http:download_document"


def _base(mcp_url: str) -> str:
    """The base URL the server names in its links: its own address, loopback named localhost."""
    return f"http://localhost:{urlsplit(mcp_url).port}"


def _meta(row: dict) -> dict:
    m = row["metadata"]
    return json.loads(m) if isinstance(m, str) else dict(m or {})


async def _stored(settings, key: str) -> tuple[bytes, dict[str, str], bytes]:
    """(stored body, its metadata, its plaintext opened here with the owner's key), read as the admin."""
    from stores.crypto import FieldCipher
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import admin_objects
    from stores.objects.sealed import open_sealed

    admin = admin_objects(settings)
    try:
        bucket = documents_bucket(settings.s3_bucket_prefix)
        body = await admin.get(bucket, key)
        meta = (await admin.head(bucket, key)).get("Metadata") or {}
    finally:
        await admin.close()
    return body, meta, open_sealed(FieldCipher.from_settings(settings), key, body, meta)


async def test_a_customer_downloads_the_plaintext_of_their_own_sealed_document(http_server, e2e_settings, facts):
    from services.document_tokens import DownloadTokens
    from services.documents import DocumentService
    from stores.crypto import FieldCipher

    service = DocumentService.from_settings(e2e_settings)
    try:
        docs = await service.list_documents(facts.alice)
    finally:
        await service.close()
    assert docs, "the e2e seed gives every customer documents"
    doc = docs[0]
    key = f"users/{facts.alice}/{doc}"
    stored, meta, plain = await _stored(e2e_settings, key)
    assert meta.get("sealed") == "enc2" and plain not in stored  # what S3 holds is ciphertext
    assert hashlib.sha256(plain).hexdigest() == meta["content-sha256"]

    subject = f"e2e-doc-{uuid.uuid4().hex[:6]}"
    before = await max_audit_id(e2e_settings)
    async with http_session(http_server, token_for(e2e_settings, "customer", user=facts.alice,
                                                   subject=subject)) as s:
        by_path = await s.call_tool("get_document_link", {"document_id": doc})
        by_source_id = await s.call_tool("get_document_link", {"document_id": key})
        refused = [await s.call_tool("get_document_link", {"document_id": d}) for d in (
            "kyc/no-such-document.txt", f"kyc/../../{facts.bob}/{doc}", f"users/{facts.bob}/{doc}")]
    assert not by_path.is_error and not by_source_id.is_error, error_text(by_path) + error_text(by_source_id)
    link = payload(by_path)
    assert link["document_id"] == doc == payload(by_source_id)["document_id"]
    assert link["url"].startswith(_base(http_server) + "/documents/download?t="), link["url"]
    assert str(facts.bob) not in link["url"]
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    assert link["size_bytes"] == len(plain) and "text/plain; charset=utf-8" in link["content_type"]
    token = parse_qs(urlsplit(link["url"]).query)["t"][0]

    signer = DownloadTokens(FieldCipher.from_settings(e2e_settings).link_signing_key())
    version = (await _head_version(e2e_settings, key))
    expired, _ = signer.issue(key=key, version_id=version, user_id=facts.alice, ttl_s=900, now=time.time() - 901)
    no_such_version, _ = signer.issue(key=key, version_id="00000000-0000-0000-0000-000000000000",
                                      user_id=facts.alice, ttl_s=900)
    # a character inside the signature, not its last one: that one's low bits are base64 padding, so some
    # changes to it decode to the same signature (a full run once saw the "tampered" token served)
    at = len(token) - 5
    flipped = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]
    route = _base(http_server) + "/documents/download"
    async with httpx.AsyncClient(timeout=30) as client:  # no Authorization: the token is the credential
        got = await client.get(link["url"])
        again = await client.get(payload(by_source_id)["url"])
        answers = {name: await client.get(route, params=params) for name, params in (
            ("tampered", {"t": flipped}), ("expired", {"t": expired}), ("missing", {}),
            ("no_such_version", {"t": no_such_version}))}
    assert got.status_code == 200, got.text
    assert got.content == plain and again.content == plain  # the plaintext, not the stored ciphertext
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["content-disposition"] == f'attachment; filename="{doc.rsplit("/", 1)[-1]}"'
    assert got.headers["cache-control"] == "no-store"
    assert [answers[n].status_code for n in ("tampered", "expired", "missing", "no_such_version")] == [
        403, 403, 403, 404]
    assert "expired" in answers["expired"].text and len(answers["tampered"].text) < 100
    assert "Traceback" not in "".join(a.text for a in answers.values())
    for res in refused:
        assert res.is_error and error_text(res).endswith(NOT_IN_SCOPE), error_text(res)

    rows = await audit_rows_since(e2e_settings, before)
    mine = [r for r in rows if r["actor_subject"] == subject]
    assert [(r["action"], r["decision"]) for r in mine] == [("get_document_link", "allowed")] * 2 + [
        ("get_document_link", "denied")] * 3
    downloads = [r for r in rows if r["action"] == DOWNLOAD]
    assert [(r["decision"], _meta(r)["outcome"]) for r in downloads] == [
        ("allowed", "served"), ("allowed", "served"), ("denied", "invalid"), ("denied", "expired"),
        ("denied", "invalid"), ("denied", "not_found")]
    served = downloads[0]
    assert served["actor_user_id"] == facts.alice and served["resource"] == key
    assert _meta(served)["link_request_id"] == mine[0]["request_id"]  # the download points at the call that linked
    assert downloads[2]["actor_subject"] == "anonymous" and downloads[2]["resource"] is None
    text = str(rows)
    assert token not in text and link["url"] not in text, "neither link nor token is kept in the audit trail"
    assert plain.decode()[:40] not in text, "no document content in the audit trail"


async def _head_version(settings, key: str) -> str | None:
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import admin_objects

    admin = admin_objects(settings)
    try:
        return (await admin.head(documents_bucket(settings.s3_bucket_prefix), key)).get("VersionId")
    finally:
        await admin.close()


async def test_an_erased_customers_document_link_answers_gone(http_server, e2e_settings):
    """A customer of their own (not in the seed: the erasure must not touch the shared fixtures) gets a sealed
    document, downloads it, is erased (their data key destroyed), and the same link then answers 410."""
    from stores.crypto import FieldCipher
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import objects_for
    from stores.objects.sealed import SEALED_CONTENT_TYPE, seal

    user = uuid.uuid4()
    key = f"users/{user}/kyc/erasure-probe.txt"
    text = f"Erasure probe for {user}\n".encode()
    cipher = FieldCipher.from_settings(e2e_settings)
    body, meta = seal(cipher.user(user, create=True), key, text, content_type="text/plain; charset=utf-8",
                      metadata={"title": "Erasure probe"})
    writer = objects_for(e2e_settings, "documents")
    try:
        await writer.put(documents_bucket(e2e_settings.s3_bucket_prefix), key, body,
                         content_type=SEALED_CONTENT_TYPE, metadata=meta)
    finally:
        await writer.close()
    try:
        async with http_session(http_server, token_for(e2e_settings, "customer", user=user)) as s:
            res = await s.call_tool("get_document_link", {"document_id": "kyc/erasure-probe.txt"})
        assert not res.is_error, error_text(res)
        url = payload(res)["url"]
        before = await max_audit_id(e2e_settings)
        async with httpx.AsyncClient(timeout=30) as client:
            first = await client.get(url)
            assert first.status_code == 200 and first.content == text
            cipher.keys.destroy([user], request_id="e2e-document-link")
            # at once: the route asks the key store, not the server's short cache of data keys
            gone = await client.get(url)
    finally:
        cipher.keys.destroy([user], request_id="e2e-document-link")  # never leave a probe readable
    assert gone.status_code == 410 and gone.text.strip() == "document erased"
    rows = [r for r in await audit_rows_since(e2e_settings, before) if r["action"] == DOWNLOAD]
    assert (rows[-1]["decision"], _meta(rows[-1])["outcome"], rows[-1]["actor_user_id"]) == ("denied", "erased", user)


async def test_on_stdio_a_sealed_document_is_linked_only_through_a_configured_http_server(
        http_server, e2e_env, e2e_settings, facts):
    """stdio has no download route: without KREDETE_PUBLIC_BASE_URL the tool says so instead of linking
    ciphertext; with it, the link names that HTTP server, which honours a token another process signed."""
    from services.documents import DocumentService

    service = DocumentService.from_settings(e2e_settings)
    try:
        doc = (await service.list_documents(facts.alice))[0]
    finally:
        await service.close()
    _, _, plain = await _stored(e2e_settings, f"users/{facts.alice}/{doc}")
    token = token_for(e2e_settings, "customer", user=facts.alice)
    env = {k: v for k, v in e2e_env.items() if k != "KREDETE_PUBLIC_BASE_URL"}
    async with stdio_session(env, token) as s:
        bare = await s.call_tool("get_document_link", {"document_id": doc})
    assert bare.is_error and "KREDETE_PUBLIC_BASE_URL" in error_text(bare), error_text(bare)
    async with stdio_session({**env, "KREDETE_PUBLIC_BASE_URL": _base(http_server)}, token) as s:
        linked = await s.call_tool("get_document_link", {"document_id": doc})
    assert not linked.is_error, error_text(linked)
    url = payload(linked)["url"]
    assert url.startswith(_base(http_server) + "/documents/download?t=")
    async with httpx.AsyncClient(timeout=30) as client:
        got = await client.get(url)
    assert got.status_code == 200 and got.content == plain


async def test_only_customers_get_document_links(http_server, e2e_settings, facts):
    for role in ("support_agent", "credit_coach", "risk_analyst", "compliance_officer"):
        async with http_session(http_server, token_for(e2e_settings, role)) as s:
            res = await s.call_tool("get_document_link", {"document_id": f"users/{facts.bob}/kyc/kyc-summary.txt"})
        assert res.is_error and "may not call 'get_document_link'" in error_text(res), role
