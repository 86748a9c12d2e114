"""Download tokens of sealed documents: a token grants one object version of one owner until it expires, and
nothing else (altered, forged under another key or purpose, expired, malformed: refused)."""

from __future__ import annotations

import uuid

import pytest
from itsdangerous import URLSafeSerializer

from services.document_tokens import SALT, DocumentGrant, DownloadTokens, LinkRefused
from stores.crypto import FieldCipher

KEY = b"k" * 32
NOW = 1_800_000_000.0
OWNER, OTHER = uuid.uuid4(), uuid.uuid4()
DOC = f"users/{OWNER}/kyc/kyc-summary.txt"


def _issue(tokens: DownloadTokens | None = None, **kw) -> str:
    args = {"key": DOC, "version_id": "v-1", "user_id": OWNER, "ttl_s": 900, "link_id": "req-1", "now": NOW, **kw}
    return (tokens or DownloadTokens(KEY)).issue(**args)[0]


def _refused(token: str, code: str, *, tokens: DownloadTokens | None = None, now: float = NOW + 1) -> None:
    with pytest.raises(LinkRefused) as exc:
        (tokens or DownloadTokens(KEY)).verify(token, now=now)
    assert exc.value.code == code


def test_a_token_grants_its_one_version_until_it_expires():
    token, grant = DownloadTokens(KEY).issue(key=DOC, version_id="v-1", user_id=OWNER, ttl_s=900, link_id="req-1",
                                             now=NOW)
    assert grant.expires_at == int(NOW) + 900
    assert DownloadTokens(KEY).verify(token, now=NOW + 899) == grant == DocumentGrant(
        key=DOC, version_id="v-1", user_id=OWNER, expires_at=int(NOW) + 900, link_id="req-1")
    assert len(token) < 400 and all(c.isalnum() or c in "-_." for c in token)  # fits a URL query as it is


def test_an_expired_token_is_refused():
    token = _issue()
    _refused(token, "expired", now=NOW + 900)
    _refused(token, "expired", now=NOW + 10_000)


def test_an_altered_token_is_refused():
    token = _issue()
    payload, sig = token.rsplit(".", 1)
    claims = DownloadTokens(KEY).verify(token, now=NOW).model_dump(mode="json", by_alias=True)
    encode = URLSafeSerializer(b"unused").dump_payload  # the same payload encoding, no signature
    for change in ({"v": "v-2"}, {"k": f"users/{OWNER}/kyc/other.txt"}, {"e": int(NOW) + 86_400},
                   {"u": str(OTHER), "k": f"users/{OTHER}/kyc/kyc-summary.txt"}):
        _refused(encode({**claims, **change}).decode() + "." + sig, "invalid")
    # control: the unchanged claims, encoded the same way, still verify (so each refusal is its change's)
    assert DownloadTokens(KEY).verify(encode(claims).decode() + "." + sig, now=NOW).version_id == "v-1"
    # inside the signature: the last character's low bits are base64 padding (some changes decode the same)
    flipped = sig[:-5] + ("A" if sig[-5] != "A" else "B") + sig[-4:]
    _refused(payload + "." + flipped, "invalid")


def test_a_token_of_another_key_or_purpose_is_refused():
    _refused(_issue(DownloadTokens(b"x" * 32)), "invalid")
    # the same key and claims signed for another purpose (salt) or with the default digest
    claims = DownloadTokens(KEY).verify(_issue(), now=NOW).model_dump(mode="json", by_alias=True)
    for serializer in (URLSafeSerializer(KEY, salt="another-purpose"), URLSafeSerializer(KEY, salt=SALT)):
        _refused(serializer.dumps(claims), "invalid")


def test_malformed_tokens_are_refused():
    for bad in ("", "abc", "a.b", "." * 10, "x" * 5000, _issue() + "x"):
        _refused(bad, "invalid")


def test_a_grant_outside_its_owners_prefix_cannot_be_made():
    with pytest.raises(ValueError):
        _issue(key=f"users/{OTHER}/kyc/kyc-summary.txt")
    with pytest.raises(ValueError):
        DownloadTokens(b"short")


def test_the_link_key_is_the_same_in_every_process_and_apart_from_other_keys():
    a, b = FieldCipher("master-secret"), FieldCipher("master-secret")
    assert a.link_signing_key() == b.link_signing_key() != FieldCipher("other-secret").link_signing_key()
    assert a.link_signing_key() not in (a.fingerprint_key(), a._index_key)
    # it follows the blind-index key, so it survives a master-key rotation as the indexes do
    rotated = FieldCipher("new-master", "local-2", old_keys={"local-1": "master-secret"}, index_key="master-secret")
    assert rotated.link_signing_key() == a.link_signing_key()
    _refused(_issue(DownloadTokens(a.link_signing_key())), "invalid",
             tokens=DownloadTokens(FieldCipher("other-secret").link_signing_key()))
