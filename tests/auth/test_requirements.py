"""The rule language and token shapes real providers send, through an in-process gateway."""
import json
import time

import pytest

from tests.support.config import config_text, provider_yaml
from tests.support.gateway import gateway_client
from tests.support.keys import ISSUER, ProviderServer, claims

AUTH0 = "https://tenant.eu.auth0.com/"
OKTA = "https://login.microsoftonline.com/tenant/v2.0"
KEYCLOAK = "https://sso.example.com/realms/main"
SERVICES = "https://issuer.internal/"

def providers(jwks_uri: str) -> list[str]:
    """Four providers shaped like Auth0, Entra ID, Keycloak and an RFC 9068 service issuer, one JWKS."""
    return [
        provider_yaml(jwks_uri, "auth0", AUTH0, "[https://api.example.test, https://tenant.eu.auth0.com/userinfo]",
                      "[RS256]", 'scope_claims: [scope, permissions]\nforward_claims: {X-User-Email: '
                      '"[https://example.com/email]", X-User-Roles: "[https://example.com/roles]"}'),
        provider_yaml(jwks_uri, "entra", OKTA, "api://my-api", "[RS256]", "scope_claims: [scp]"),
        provider_yaml(jwks_uri, "keycloak", KEYCLOAK, "my-api", "[ES256]"),
        provider_yaml(jwks_uri, "services", SERVICES, algorithms="[RS256]",
                      extra="typ: at+jwt\nmax_lifetime: 600\nrequired_claims: [client_id]\nleeway: 0"),
    ]


ROUTES = """\
  - path: /public
    access: public
  - path: /maybe
    access: optional
  - path: /docs/*
    methods: [GET]
    access: {any_scopes: [read:docs, admin]}
  - path: /docs/*
    methods: [DELETE]
    access: {scopes: [delete:docs]}
  - path: /ns-roles
    access:
      claims: {"[https://example.com/roles]": admin}
  - path: /entra
    access:
      all_of:
        - {scopes: [files.read]}
        - {claims: {roles: {one_of: [Reader, Writer]}}}
  - path: /realm
    access:
      claims: {realm_access.roles: {all_of: [admin, ops]}, resource_access.my-api.roles: billing}
  - path: /either
    access:
      any_of:
        - {scopes: [admin]}
        - {claims: {email_verified: true, org: {present: true}}}
  - path: /services/**
    providers: [services]
    access: authenticated
  - path: /cors
    cors: {allow_origins: [https://app.example.com], allow_headers: [Authorization], expose_headers: [X-Trace]}
    access: {scopes: [read:cors]}
"""


@pytest.fixture
async def gw(echo_upstream, rsa_key, ec_key):
    async with ProviderServer([rsa_key, ec_key]) as server, \
            gateway_client(config_text(echo_upstream.url, providers(server.jwks_uri), ROUTES)) as (_, client):
        client.echo = echo_upstream
        yield client


async def hit(client, path, token=None, method="GET", headers=None):
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with client.request(method, path, headers=headers) as response:
        body = await response.json(content_type=None)
        return response.status, (body or {}).get("code"), response.headers


def auth0_token(key, **extra):
    return key.sign(claims("openid read:docs", issuer=AUTH0,
                           audience=["https://api.example.test", "https://tenant.eu.auth0.com/userinfo"],
                           permissions=["delete:docs", "read:cors"], **{"https://example.com/roles": ["admin", "dev"],
                                                                        "https://example.com/email": "a@example.com"},
                           **extra))


async def test_auth0_shape_scope_permissions_namespaced_claims_and_aud_list(gw, rsa_key):
    token = auth0_token(rsa_key)
    assert (await hit(gw, "/docs/a", token))[0] == 200
    assert (await hit(gw, "/docs/a", token, "DELETE"))[0] == 200  # from the permissions list
    assert (await hit(gw, "/ns-roles", token))[0] == 200
    forwarded = gw.echo.last
    assert forwarded.header("X-User-Email") == "a@example.com"
    assert json.loads(forwarded.header("X-User-Roles")) == ["admin", "dev"]
    assert forwarded.header("X-Auth-Scopes") == "delete:docs openid read:cors read:docs"


async def test_configured_claim_headers_are_stripped_from_clients(gw):
    await hit(gw, "/public", headers={"X-User-Email": "ceo@example.com", "x_user_roles": "admin"})
    names = {k.lower().replace("_", "-") for k, _ in gw.echo.last.headers}
    assert "x-user-email" not in names and "x-user-roles" not in names


async def test_methods_per_rule(gw, rsa_key):
    reader = rsa_key.sign(claims("read:docs", issuer=AUTH0, audience="https://api.example.test"))
    assert (await hit(gw, "/docs/x", reader))[0] == 200
    assert (await hit(gw, "/docs/x", reader, "DELETE"))[:2] == (403, "insufficient_scope")
    status, code, headers = await hit(gw, "/docs/x", reader, "PUT")
    assert (status, headers["Allow"]) == (405, "DELETE, GET, HEAD")
    assert (await hit(gw, "/docs/x/y", reader))[0] == 404  # * is one segment


async def test_entra_scp_list_and_roles(gw, rsa_key):
    good = rsa_key.sign(claims(issuer=OKTA, audience="api://my-api", scp="files.read user.read", roles=["Reader"]))
    assert (await hit(gw, "/entra", good))[0] == 200
    listed = rsa_key.sign(claims(issuer=OKTA, audience="api://my-api", scp=["files.read"], roles=["Writer"]))
    assert (await hit(gw, "/entra", listed))[0] == 200
    no_role = rsa_key.sign(claims(issuer=OKTA, audience="api://my-api", scp=["files.read"], roles=["Guest"]))
    assert (await hit(gw, "/entra", no_role))[:2] == (403, "insufficient_scope")


async def test_keycloak_nested_roles(gw, ec_key, rsa_key):
    base = dict(issuer=KEYCLOAK, audience=["my-api", "account"],
                resource_access={"my-api": {"roles": ["billing"]}, "account": {"roles": ["view"]}})
    good = ec_key.sign(claims(realm_access={"roles": ["admin", "ops", "x"]}, **base))
    assert (await hit(gw, "/realm", good))[0] == 200
    partial = ec_key.sign(claims(realm_access={"roles": ["admin"]}, **base))
    assert (await hit(gw, "/realm", partial))[:2] == (403, "insufficient_scope")
    rs = rsa_key.sign(claims(realm_access={"roles": ["admin", "ops"]}, **base))  # RS256 not allowed there
    assert (await hit(gw, "/realm", rs))[:2] == (401, "invalid_header")


async def test_rfc9068_typ_lifetime_and_required_claims(gw, rsa_key):
    now = int(time.time())
    ok = dict(issuer=SERVICES, client_id="svc-a", iat=now, exp=now + 300)
    assert (await hit(gw, "/services/x", rsa_key.sign(claims(**ok), headers={"typ": "at+jwt"})))[0] == 200
    assert (await hit(gw, "/services/x", rsa_key.sign(claims(**ok), headers={"typ": "application/at+jwt"})))[0] == 200
    assert (await hit(gw, "/services/x", rsa_key.sign(claims(**ok), headers={"typ": "JWT"})))[:2] == \
        (401, "invalid_header")
    too_long = {**ok, "exp": now + 3600}
    assert (await hit(gw, "/services/x", rsa_key.sign(claims(**too_long), headers={"typ": "at+jwt"})))[:2] == \
        (401, "invalid_claims")
    no_client = {**ok, "client_id": None}
    assert (await hit(gw, "/services/x", rsa_key.sign(claims(**no_client), headers={"typ": "at+jwt"})))[:2] == \
        (401, "invalid_claims")


async def test_route_restricted_to_a_provider(gw, rsa_key):
    user = auth0_token(rsa_key)
    status, code, _ = await hit(gw, "/services/x", user)
    assert (status, code) == (401, "invalid_token")


async def test_any_of_composition_and_strict_types(gw, rsa_key):
    make = lambda **c: rsa_key.sign(claims(issuer=AUTH0, audience="https://api.example.test", **c))  # noqa: E731
    assert (await hit(gw, "/either", make(scope="admin")))[0] == 200
    assert (await hit(gw, "/either", make(email_verified=True, org="acme")))[0] == 200
    assert (await hit(gw, "/either", make(email_verified="true", org="acme")))[0] == 403  # a string is not true
    assert (await hit(gw, "/either", make(email_verified=1, org="acme")))[0] == 403  # 1 is not true
    assert (await hit(gw, "/either", make(email_verified=True)))[0] == 403


async def test_substring_and_prefix_never_grant(gw, rsa_key):
    for scope in ("read:docs2", "read:doc", "admin:all", "xadmin"):
        token = rsa_key.sign(claims(scope, issuer=AUTH0, audience="https://api.example.test"))
        assert (await hit(gw, "/docs/a", token))[0] == 403, scope
    roles = rsa_key.sign(claims(issuer=AUTH0, audience="https://api.example.test",
                                **{"https://example.com/roles": ["administrator", "admin2"]}))
    assert (await hit(gw, "/ns-roles", roles))[0] == 403


async def test_optional_route(gw, rsa_key):
    assert (await hit(gw, "/maybe"))[0] == 200
    assert gw.echo.last.header("X-Auth-Subject") is None
    assert (await hit(gw, "/maybe", auth0_token(rsa_key, sub="carol")))[0] == 200
    assert gw.echo.last.header("X-Auth-Subject") == "carol"
    assert (await hit(gw, "/maybe", auth0_token(rsa_key, ttl=-100)))[:2] == (401, "token_expired")


async def test_cors_preflight_skips_auth_and_errors_are_readable(gw, rsa_key):
    origin = {"Origin": "https://app.example.com"}
    preflight = {**origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    seen = gw.echo.hits
    status, _, headers = await hit(gw, "/cors", method="OPTIONS", headers=preflight)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "GET" in headers["Access-Control-Allow-Methods"]
    assert gw.echo.hits == seen  # answered by the gateway
    status, _, _ = await hit(gw, "/cors", method="OPTIONS",
                             headers={**preflight, "Origin": "https://evil.example.com"})
    assert status == 403
    status, code, headers = await hit(gw, "/cors", headers=origin)
    assert (status, code) == (401, "authorization_header_missing")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    token = auth0_token(rsa_key)
    status, _, headers = await hit(gw, "/cors", token, headers=origin)
    assert status == 200 and headers["Access-Control-Expose-Headers"] == "X-Trace"
    # without CORS on the route, a preflight is an ordinary request and needs what the route needs
    status, code, _ = await hit(gw, "/ns-roles", method="OPTIONS", headers=preflight)
    assert (status, code) == (401, "authorization_header_missing")


async def test_unknown_issuer_and_wrong_audience_for_that_provider(gw, rsa_key):
    wrong = rsa_key.sign(claims(issuer=OKTA, audience="https://api.example.test"))
    assert (await hit(gw, "/entra", wrong))[:2] == (401, "invalid_claims")
    stranger = rsa_key.sign(claims(issuer=ISSUER))
    assert (await hit(gw, "/entra", stranger))[:2] == (401, "invalid_claims")
