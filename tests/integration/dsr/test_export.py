"""`kredete dsr export`: the user's data as JSON plus their documents, in an AES-256 zip in the documents bucket,
handed out as a 15-minute presigned link (downloaded here for real, over TLS) and a one-time password."""

from __future__ import annotations

import io
import json
import uuid

import httpx
import pytest
import pyzipper

from tests.integration.dsr.conftest import run_cli

EXPORT_REASON = "SAR-2044: the customer asked for a copy of all their data"


def _download(dsr_data, url: str) -> bytes:
    res = httpx.get(url, verify=dsr_data.settings.s3_ca_file, timeout=30)
    assert res.status_code == 200, res.text[:200]
    return res.content


def _open(blob: bytes, password: str) -> tuple[dict, dict[str, bytes]]:
    with pyzipper.AESZipFile(io.BytesIO(blob)) as z:
        z.setpassword(password.encode())
        data = json.loads(z.read("data.json"))
        files = {n: z.read(n) for n in z.namelist() if n.startswith("documents/")}
    return data, files


async def test_export_of_a_user_with_data(dsr_data, privacy):
    user = dsr_data.with_documents[-1]
    person = dsr_data.people[user]
    res = run_cli(dsr_data.env, "dsr", "export", "--user", user, "--reason", EXPORT_REASON, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["found"] and out["key"] == f"users/{user}/exports/{out['request_id']}.zip"
    assert "X-Amz-Expires=900" in out["url"]
    blob = _download(dsr_data, out["url"])

    with pyzipper.AESZipFile(io.BytesIO(blob)) as z, pytest.raises(RuntimeError):
        z.read("data.json")  # no password, no data
    assert person.email.encode() not in blob and person.full_name.encode() not in blob

    data, files = _open(blob, out["password"])
    (profile,) = data["payments"]["users"]
    assert (profile["email"], profile["full_name"], profile["phone"]) == (person.email, person.full_name, person.phone)
    assert {k["document_number"] for k in data["payments"]["kyc_records"]} == set(person.national_ids.values())
    assert data["payments"]["transactions"] and data["payments"]["wallets"]
    assert data["credit_store"]["credit_reports"]
    assert any(person.full_name in (r["subject"] or {}).get("full_name", "") for r in
               data["credit_store"]["credit_reports"])
    assert files and all(person.full_name.encode() in body for body in files.values())
    assert data["documents"] == sorted(n.removeprefix("documents/") for n in files)

    # audited, and the password is in neither the request record nor the audit row
    req = out["request_id"]
    async with privacy.postgres.connection() as conn:
        row = await conn.fetchrow("SELECT status, result::text FROM dsr_requests WHERE id = $1", uuid.UUID(req))
        audit = await conn.fetchval("SELECT metadata::text FROM audit_logs WHERE action = 'dsr.export' AND "
                                    "resource = $1", f"dsr:{req}")
    assert row["status"] == "done" and audit is not None
    assert out["password"] not in row["result"] and out["password"] not in audit


async def test_export_of_a_user_with_no_data_is_a_valid_empty_archive(dsr_data):
    nobody = str(uuid.uuid4())
    res = run_cli(dsr_data.env, "dsr", "export", "--user", nobody, "--reason", EXPORT_REASON, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["found"] is False and out["documents"] == 0
    data, files = _open(_download(dsr_data, out["url"]), out["password"])
    assert data["user_id"] == nobody and data["found"] is False
    assert data["payments"] == {} and data["credit_store"] == {} and data["cache"] == {} and data["documents"] == []
    assert files == {}


async def test_export_refuses_a_reason_without_a_ticket_and_a_staff_subject(dsr_data):
    res = run_cli(dsr_data.env, "dsr", "export", "--user", dsr_data.user_ids[0], "--reason", "please send my data")
    assert res.returncode == 2
    res = run_cli(dsr_data.env, "dsr", "export", "--user", "coach-1", "--reason", EXPORT_REASON)
    assert res.returncode == 2 and "staff subject" in res.stderr
