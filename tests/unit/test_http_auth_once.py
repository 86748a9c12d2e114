"""Over HTTP a request's bearer token is verified once: the SDK's authentication middleware runs our verifier, and
the guards take the principal it built from the request's scope (never from anything the client sends)."""

from __future__ import annotations

import time
import uuid

import pytest
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from mcp.server.auth.provider import AccessToken
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import guards.bearer as bearer
from guards.bearer import Authenticator, KredeteTokenVerifier, issue_token, verified_token_type
from guards.errors import Unauthenticated
from guards.principal import Principal, Role
from tests.unit.test_guards import S


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """Every call of `guards.bearer.verify_token` (the signature and claims check), by token."""
    seen: list[str] = []
    real = bearer.verify_token

    def counting(token, **kw):
        seen.append(token)
        return real(token, **kw)

    monkeypatch.setattr(bearer, "verify_token", counting)
    return seen


def _app() -> Starlette:
    """The SDK's own authentication stack (as `streamable_http_app` builds it) around one endpoint that asks
    the guards' authenticator who the caller is."""
    authenticator = Authenticator("http", S)

    async def who(_request):
        try:
            p = await authenticator.authenticate(None)
        except Unauthenticated as exc:
            return JSONResponse({"refused": exc.code}, status_code=401)
        return JSONResponse({"subject": p.subject, "role": p.role.value, "user": str(p.user_id)})

    return Starlette(routes=[Route("/who", who)], middleware=[
        Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(KredeteTokenVerifier(S))),
        Middleware(AuthContextMiddleware)])


def test_a_request_token_is_verified_once_and_its_principal_reaches_the_guards(verifications):
    uid = uuid.uuid4()
    token = issue_token("customer", "user:1", user_id=uid, settings=S)
    with TestClient(_app()) as client:
        # Headers a client might hope the server believes change nothing: only the verified token counts.
        r = client.get("/who", headers={"Authorization": f"Bearer {token}", "X-User": "admin",
                                        "X-Role": "compliance_officer"})
    assert r.status_code == 200
    assert r.json() == {"subject": "user:1", "role": "customer", "user": str(uid)}
    assert verifications == [token]


def test_a_forged_token_never_reaches_the_guards_as_a_principal(verifications):
    token = issue_token("support_agent", "s", settings=S)[:-4] + "AAAA"
    with TestClient(_app()) as client:
        r = client.get("/who", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json() == {"refused": "invalid_token"}
    assert verifications == [token]


async def test_only_a_token_our_verifier_accepted_is_believed():
    """An access token in the request context that our verifier did not build (no principal) is refused, so
    nothing but `KredeteTokenVerifier` can hand the guards a principal."""
    plain = AccessToken(token="x", client_id="compliance", scopes=["compliance_officer"],
                        expires_at=int(time.time()) + 60)
    reset = auth_context_var.set(AuthenticatedUser(plain))
    try:
        with pytest.raises(Unauthenticated):
            await Authenticator("http", S).authenticate(None)
    finally:
        auth_context_var.reset(reset)


@pytest.mark.parametrize(("expires_in", "accepted"), [(-bearer.LEEWAY_S - 2, False), (30, True)])
async def test_the_expiry_is_checked_again_at_the_call(expires_in, accepted):
    """A call that starts after its token expired (past the verifier's leeway) is refused without a second
    signature check; one within its lifetime passes."""
    p = Principal(subject="s", role=Role.SUPPORT_AGENT, token_id="j", expires_at=int(time.time()) + expires_in,
                  issuer="kredete")
    access = verified_token_type()(token="t", client_id="s", scopes=["support_agent"], expires_at=p.expires_at,
                                   principal=p)
    reset = auth_context_var.set(AuthenticatedUser(access))
    try:
        if accepted:
            assert await Authenticator("http", S).authenticate(None) == p
        else:
            with pytest.raises(Unauthenticated) as refused:
                await Authenticator("http", S).authenticate(None)
            assert refused.value.code == "expired_token"
    finally:
        auth_context_var.reset(reset)


def test_a_token_accepted_before_is_only_checked_for_expiry(verifications, monkeypatch):
    """Presented again, an accepted token's signature and claims are not verified again, but its expiry is; a
    refused token is verified (and refused) every time."""
    token = issue_token("support_agent", "s", settings=S)
    tokens = bearer.VerifiedTokens(S)
    first = tokens.principal(token)
    assert tokens.principal(token) == first and verifications == [token]
    forged = token[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            tokens.principal(forged)
    assert verifications == [token, forged, forged]
    # Past its expiry (and the leeway) by this process's clock, the remembered principal is not used: the token
    # goes through the full verification again (which refuses an expired token: test_guards).
    later = first.expires_at + bearer.LEEWAY_S + 1
    monkeypatch.setattr(bearer.time, "time", lambda: later)
    tokens.principal(token)
    assert verifications == [token, forged, forged, token]
