"""An external OIDC issuer's RS256 tokens are verified against its JWKS (served here on loopback)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from guards.bearer import _jwks_client, verify_token
from guards.errors import Unauthenticated
from guards.principal import Role
from tests.unit.test_guards import S

ISSUER = "https://idp.example.test/"


@pytest.fixture(scope="module")
def idp():
    """A JWKS endpoint on 127.0.0.1 with one RSA key; yields (jwks_url, private_key, kid)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex[:8]
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", key, kid
    server.shutdown()
    _jwks_client.cache_clear()


def _settings(jwks_url: str):
    return S.model_copy(update={"oidc_issuer": ISSUER, "oidc_jwks_url": jwks_url, "oidc_audience": "kredete-mcp"})


def _token(key, kid: str, **over) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "kredete-mcp", "sub": "okta|123", "iat": now, "exp": now + 300,
              "kredete_role": "support_agent", **over}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_oidc_token_is_accepted_with_role_from_the_configured_claim(idp):
    url, key, kid = idp
    p = verify_token(_token(key, kid), settings=_settings(url))
    assert (p.role, p.subject, p.issuer) == (Role.SUPPORT_AGENT, "okta|123", ISSUER)


@pytest.mark.parametrize("over", [{"aud": "someone-else"}, {"exp": int(time.time()) - 60},
                                  {"kredete_role": "admin"}, {"kredete_role": None}])
def test_oidc_token_with_bad_claims_is_refused(idp, over):
    url, key, kid = idp
    with pytest.raises(Unauthenticated):
        verify_token(_token(key, kid, **over), settings=_settings(url))


def test_oidc_token_signed_by_another_key_is_refused(idp):
    url, _key, kid = idp
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated):
        verify_token(_token(other, kid), settings=_settings(url))


def test_without_oidc_configuration_an_external_token_is_refused(idp):
    _url, key, kid = idp
    with pytest.raises(Unauthenticated):
        verify_token(_token(key, kid), settings=S)
