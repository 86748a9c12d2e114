"""get_document_link on the real stack: a customer gets a presigned 15-minute link to their own document (by its
path or by the source_id search_knowledge cites), the link downloads exactly that object from S3, another
customer's document is answered like a missing one, staff are denied, and every call is audited."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.e2e.conftest import http_session, token_for
from tests.e2e.test_mcp_server import audit_rows_since, error_text, max_audit_id, payload

NOT_IN_SCOPE = "no such record in your scope"


async def test_a_customer_downloads_their_own_document_through_a_15_minute_link(http_server, e2e_settings, facts):
    from services.documents import DocumentService
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import admin_objects

    service, admin = DocumentService.from_settings(e2e_settings), admin_objects(e2e_settings)
    try:
        docs = await service.list_documents(facts.alice)
        assert docs, "the e2e seed gives every customer documents"
        doc = docs[0]
        stored = await admin.get(documents_bucket(e2e_settings.s3_bucket_prefix), f"users/{facts.alice}/{doc}")
    finally:
        await service.close()
        await admin.close()
    subject = f"e2e-doc-{uuid.uuid4().hex[:6]}"
    before = await max_audit_id(e2e_settings)
    async with http_session(http_server, token_for(e2e_settings, "customer", user=facts.alice,
                                                   subject=subject)) as s:
        by_path = await s.call_tool("get_document_link", {"document_id": doc})
        by_source_id = await s.call_tool("get_document_link", {"document_id": f"users/{facts.alice}/{doc}"})
        refused = [await s.call_tool("get_document_link", {"document_id": d}) for d in (
            "kyc/no-such-document.txt", f"kyc/../../{facts.bob}/{doc}", f"users/{facts.bob}/{doc}")]
    assert not by_path.is_error and not by_source_id.is_error, error_text(by_path) + error_text(by_source_id)
    link = payload(by_path)
    assert link["document_id"] == doc == payload(by_source_id)["document_id"]
    assert link["url"].startswith("https://localhost:") and f"/users/{facts.alice}/{doc}?" in link["url"]
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    assert "X-Amz-Expires=900" in link["url"]
    tls = ssl.create_default_context(cafile=e2e_settings.s3_ca_file)
    async with httpx.AsyncClient(verify=tls, timeout=30) as client:
        got = await client.get(link["url"])
        tampered = await client.get(link["url"].replace(str(facts.alice), str(facts.bob)))
    assert got.status_code == 200 and got.content == stored and link["size_bytes"] == len(stored)
    assert tampered.status_code == 403  # the signature covers the key: a link is for one object only
    for res in refused:
        assert res.is_error and error_text(res).endswith(NOT_IN_SCOPE), error_text(res)
    rows = [r for r in await audit_rows_since(e2e_settings, before) if r["actor_subject"] == subject]
    assert [(r["action"], r["decision"]) for r in rows] == [("get_document_link", "allowed")] * 2 + [
        ("get_document_link", "denied")] * 3
    assert not any(link["url"] in str(r) for r in rows), "the link itself is not kept in the audit trail"


async def test_only_customers_get_document_links(http_server, e2e_settings, facts):
    for role in ("support_agent", "credit_coach", "risk_analyst", "compliance_officer"):
        async with http_session(http_server, token_for(e2e_settings, role)) as s:
            res = await s.call_tool("get_document_link", {"document_id": f"users/{facts.bob}/kyc/kyc-summary.txt"})
        assert res.is_error and "may not call 'get_document_link'" in error_text(res), role
