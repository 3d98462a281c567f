"""Issue 12 item 7: one meaning per rule.

`present: true` treats a JSON null as absent, as `required_claims` does; a token from a provider a route does
not accept gets the same 401 whether the route says `providers:` or its rule does, naming the token's issuer
and the accepted ones.
"""
import aiohttp

from tests.support.config import config_text
from tests.support.gateway import running_gateway
from tests.support.keys import AUDIENCE, ProviderServer, SigningKey, claims

A, B = "https://a.test/", "https://b.test/"
KEY_A, KEY_B = SigningKey.rsa("key-a"), SigningKey.rsa("key-b")
ROUTES = """\
  - path: /route-level
    providers: [a]
    access: authenticated
  - path: /rule-level
    access: {providers: [a]}
  - path: /rule-level-any
    access:
      any_of:
        - {providers: [a], scopes: [x]}
        - {providers: [a], scopes: [y]}
  - path: /team
    access:
      claims: {team: {present: true}}
  - path: /no-team
    access:
      claims: {team: {present: false}}
"""


def providers(jwks_uri: str) -> str:
    return "\n".join(f"  - name: {name}\n    issuer: {issuer}\n    audience: {AUDIENCE}\n    jwks_uri: {jwks_uri}"
                     for name, issuer in (("a", A), ("b", B)))


async def answer(client, path, token):
    async with client.get(path, headers={"Authorization": f"Bearer {token}"}) as response:
        body = await response.json(content_type=None)
        return response.status, body.get("code"), body.get("description"), response.headers.get("WWW-Authenticate")


async def gateway_with_two_providers(echo_upstream):
    server = await ProviderServer([KEY_A, KEY_B]).start()
    return server, running_gateway(config_text(echo_upstream.url, providers(server.jwks_uri), ROUTES))


async def test_a_provider_not_accepted_answers_the_same_401_from_the_route_or_its_rule(echo_upstream):
    """Before: route-level providers gave 401, access-level 403 insufficient_scope."""
    server, gateway = await gateway_with_two_providers(echo_upstream)
    try:
        async with gateway as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            token = KEY_B.sign(claims(issuer=B, scope="x y"))
            answers = set()
            for _ in range(2):  # verified, then from the token cache: the same answer
                for path in ("/route-level", "/rule-level", "/rule-level-any"):
                    answers.add(await answer(client, path, token))
            (status, code, description, challenge), = answers
            assert (status, code) == (401, "invalid_token")
            assert description == f"the token's issuer {B} is not accepted on this route; accepted issuers: {A}"
            assert challenge == f'Bearer realm="api", error="invalid_token", error_description="{description}"'
            assert (await answer(client, "/rule-level", KEY_A.sign(claims(issuer=A))))[0] == 200
    finally:
        await server.stop()


async def test_present_treats_json_null_as_absent_like_required_claims(echo_upstream):
    """Before: {present: true} passed for "team": null while required_claims refused it."""
    server, gateway = await gateway_with_two_providers(echo_upstream)
    try:
        async with gateway as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            null_team = KEY_A.sign(claims(issuer=A) | {"team": None})  # claims() itself leaves out None values
            status, code, description, _ = await answer(client, "/team", null_team)
            assert (status, code, description) == (403, "insufficient_scope", "claim team must be present")
            assert (await answer(client, "/no-team", null_team))[0] == 200
            assert (await answer(client, "/team", KEY_A.sign(claims(issuer=A, team="blue"))))[0] == 200
    finally:
        await server.stop()
