"""Bearer tokens: signed JWTs (HS256 by our issuer; an external OIDC issuer via JWKS by configuration), their
verification, and who the caller of a request is on each transport (`Authenticator`)."""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import jwt
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.settings import Settings, resolve
from guards.errors import Unauthenticated
from guards.principal import Principal, Role

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

# The MCP SDK is imported inside the two classes that need it: loading it takes ~2 s, and `kredete token issue`
# and the test harness mint tokens without a server.

LEEWAY_S = 5
DEFAULT_MAX_LIFETIME_S = 24 * 3600


class TokenPolicy(BaseSettings):
    """`KREDETE_TOKEN_MAX_LIFETIME_S`: the longest lifetime (exp - iat) a token may have, ours or an OIDC
    issuer's; longer-lived tokens are refused by `verify_token` and never issued (default 24 h)."""

    model_config = SettingsConfigDict(env_prefix="KREDETE_TOKEN_", env_file=None, extra="ignore")

    max_lifetime_s: int = Field(DEFAULT_MAX_LIFETIME_S, ge=60, le=30 * 86_400)


@lru_cache(maxsize=1)
def token_policy() -> TokenPolicy:
    return TokenPolicy()


def issue_token(
    role: Role | str,
    subject: str,
    *,
    user_id: UUID | str | None = None,
    ttl_s: int = 3600,
    settings: Settings | None = None,
    policy: TokenPolicy | None = None,
) -> str:
    """Mint a token binding role, subject and (customers only, required) the user id."""
    s = resolve(settings)
    role = Role(role)
    if role is Role.CUSTOMER and not user_id:
        raise ValueError("a customer token must bind a user id")
    max_s = (policy or token_policy()).max_lifetime_s
    if not 0 < ttl_s <= max_s:
        raise ValueError(f"ttl must be between 1 and {max_s} seconds: the maximum token lifetime "
                         "(KREDETE_TOKEN_MAX_LIFETIME_S); the server refuses longer-lived tokens")
    now = int(time.time())
    claims = {
        "iss": s.token_issuer,
        "aud": s.token_audience,
        "sub": subject,
        "role": role.value,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if user_id:
        claims["uid"] = str(UUID(str(user_id)))
    return jwt.encode(claims, s.token_signing_key.get_secret_value(), algorithm="HS256")


def verify_token(token: str | None, *, settings: Settings | None = None,
                 policy: TokenPolicy | None = None) -> Principal:
    """Check signature, issuer, audience, expiry, lifetime and claims; raise Unauthenticated on any doubt.

    Our own tokens are HS256 with our issuer; when an external OIDC issuer is configured, tokens whose `iss`
    is that issuer are verified against its JWKS instead (role and user id from the configured claims).
    A token whose lifetime (exp - iat) exceeds `KREDETE_TOKEN_MAX_LIFETIME_S` is refused, even if signed.
    The error's `code` says why (fixed strings, for the audit row); its message never echoes the token.
    """
    if not token:
        raise Unauthenticated(code="missing_token")
    if len(token) > 8192:
        raise Unauthenticated("authentication required: malformed token", code="malformed_token")
    s = resolve(settings)
    role_claim, user_claim = "role", "uid"
    try:
        # Only selects the verification path; nothing from the unverified claims is trusted.
        unverified_iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        if s.oidc_issuer and s.oidc_jwks_url and unverified_iss == s.oidc_issuer:
            claims = _decode_oidc(token, s)
            role_claim, user_claim = s.oidc_role_claim, s.oidc_user_claim
        else:
            claims = jwt.decode(token, s.token_signing_key.get_secret_value(), algorithms=["HS256"],
                                audience=s.token_audience, issuer=s.token_issuer, leeway=LEEWAY_S,
                                options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("authentication required: token expired", code="expired_token") from exc
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.PyJWKClientError) as exc:
        raise Unauthenticated("authentication required: invalid token signature", code="invalid_signature") from exc
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
        raise Unauthenticated("authentication required: token not issued for this server",
                              code="wrong_issuer_or_audience") from exc
    except jwt.DecodeError as exc:
        raise Unauthenticated("authentication required: malformed token", code="malformed_token") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("authentication required: token claims are invalid", code="invalid_claims") from exc
    max_s = (policy or token_policy()).max_lifetime_s
    try:
        lifetime = int(claims["exp"]) - int(claims["iat"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Unauthenticated("authentication required: token claims are invalid", code="invalid_claims") from exc
    if lifetime > max_s:
        raise Unauthenticated(f"authentication required: token lifetime exceeds the maximum of {max_s} s",
                              code="lifetime_exceeded")
    try:
        principal = Principal(subject=claims["sub"], role=Role(claims.get(role_claim)),
                              user_id=claims.get(user_claim), token_id=claims.get("jti") or claims["sub"],
                              expires_at=claims["exp"], issuer=claims["iss"])
    except (KeyError, ValueError, ValidationError) as exc:
        raise Unauthenticated("authentication required: token claims are invalid", code="invalid_claims") from exc
    if principal.role is Role.CUSTOMER and principal.user_id is None:
        raise Unauthenticated("authentication required: customer token without a user id", code="invalid_claims")
    return principal


class VerifiedTokens:
    """The principals of tokens this process verified, by token: presented again, a token is only checked for
    expiry (with the same leeway), because its signature, issuer, audience, lifetime and claims cannot change
    for the same string under the same settings. Bounded (least recently used out); only accepted tokens are
    kept, so a refused one is verified (and refused) every time."""

    def __init__(self, settings: Settings | None = None, *, size: int = 256) -> None:
        self.settings = resolve(settings)
        self.size = size
        self._principals: OrderedDict[str, Principal] = OrderedDict()

    def principal(self, token: str | None) -> Principal:
        """`verify_token(token)`, or the principal it gave for this token before while that has not expired."""
        known = self._principals.get(token) if token else None
        if known is not None and time.time() <= known.expires_at + LEEWAY_S:
            self._principals.move_to_end(token)
            return known
        if known is not None:
            del self._principals[token]
        principal = verify_token(token, settings=self.settings)
        self._principals[token] = principal
        if len(self._principals) > self.size:
            self._principals.popitem(last=False)
        return principal


_OIDC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"})


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)


def _decode_oidc(token: str, s: Settings) -> dict:
    """An external issuer's token: asymmetric signature from its JWKS, issuer and audience checked."""
    key = _jwks_client(s.oidc_jwks_url).get_signing_key_from_jwt(token)
    # The JWK names its algorithm; only asymmetric ones are accepted (never HS*/none from an IdP).
    alg = key.algorithm_name
    if alg not in _OIDC_ALGORITHMS:
        raise jwt.InvalidAlgorithmError(alg)
    return jwt.decode(token, key, algorithms=[alg],
                      audience=s.oidc_audience or s.token_audience, issuer=s.oidc_issuer, leeway=LEEWAY_S,
                      options={"require": ["exp", "iat", "sub", "iss", "aud"]})


@lru_cache(maxsize=1)
def verified_token_type() -> type[AccessToken]:
    """`AccessToken` carrying the `Principal` our verifier built from it (the SDK's type, imported lazily).

    Only `KredeteTokenVerifier` makes one, and the SDK's authentication middleware puts it in the request's
    scope: nothing a client sends can construct or replace it, so the guards take its principal as verified.
    """
    from mcp.server.auth.provider import AccessToken

    class VerifiedAccessToken(AccessToken):
        principal: Principal

    return VerifiedAccessToken


class KredeteTokenVerifier:
    """MCP SDK `TokenVerifier`: the HTTP transport refuses requests whose bearer token fails here.

    The one verification of a request's token (of a token accepted before, only its expiry: `VerifiedTokens`):
    the accepted token carries its `Principal`
    (`verified_token_type()`), which `Authenticator` hands to the guards without verifying again.
    `on_failure(exc)` receives the `Unauthenticated` error of a refused token, so the HTTP guard can audit the
    refusal with its reason (the denial is recorded, the token is not).
    """

    def __init__(self, settings: Settings | None = None, on_failure=None) -> None:
        self._settings = resolve(settings)
        self._on_failure = on_failure
        self._verified = VerifiedTokens(self._settings)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            p = self._verified.principal(token)
        except Unauthenticated as exc:
            if self._on_failure is not None:
                await self._on_failure(exc)
            return None
        return verified_token_type()(
            token=token, client_id=p.subject, scopes=[p.role.value], expires_at=p.expires_at, subject=p.subject,
            claims={"iss": p.issuer, "role": p.role.value, "uid": str(p.user_id) if p.user_id else None},
            principal=p)


class Authenticator:
    """The principal of a call. stdio: `KREDETE_TOKEN` (its signature and claims verified once, its expiry
    checked on every call: `VerifiedTokens`). HTTP: the principal the
    request's token verification built (`KredeteTokenVerifier`, once per request); only its expiry is checked
    again, with the same leeway (a long call may start after the HTTP layer accepted the token)."""

    def __init__(self, transport: Literal["stdio", "http"], settings: Settings | None = None) -> None:
        self.transport = transport
        self.settings = resolve(settings)
        self._verified = VerifiedTokens(self.settings, size=4)

    async def authenticate(self, ctx: Any) -> Principal:
        if self.transport == "stdio":
            return self._verified.principal(os.environ.get("KREDETE_TOKEN"))
        from mcp.server.auth.middleware.auth_context import get_access_token

        access = get_access_token()
        if access is None:
            user = getattr(getattr(ctx, "request", None), "scope", {}).get("user")
            access = getattr(user, "access_token", None)
        # Only a token our verifier accepted in this request carries a principal; anything else is refused.
        if not isinstance(access, verified_token_type()):
            raise Unauthenticated()
        principal = access.principal
        if time.time() > principal.expires_at + LEEWAY_S:
            raise Unauthenticated("authentication required: token expired", code="expired_token")
        return principal
