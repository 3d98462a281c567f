"""Issue 12 item 8: scopes come from `scope` alone unless a provider lists other claims in `scope_claims`.

The old default read `scope` and `scp` and unioned them, so an IdP rule copying user-editable metadata into
`scp` could grant `read:admin` to a token whose `scope` said `read:user`.
"""
import aiohttp
import pytest

from tests.support.config import DEFAULT_ROUTES, config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import claims


async def admin_status(provider, upstream, token, extra=""):
    text = config_text(upstream.url, provider_yaml(provider.jwks_uri, extra=extra), DEFAULT_ROUTES)
    async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
        async with client.get("/admin", headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status, response.headers.get("X-Auth-Scopes")


async def test_scp_does_not_add_scopes_by_default(provider, echo_upstream, rsa_key):
    """Before: 200, with scope read:user and scp read:admin unioned."""
    token = rsa_key.sign(claims("read:user", scp="read:admin"))
    assert (await admin_status(provider, echo_upstream, token))[0] == 403


@pytest.mark.parametrize("extra, scope, scp", [
    ("scope_claims: [scp]", None, ["read:admin"]),  # Okta, Entra
    ("scope_claims: [scope, scp]", "read:user", "read:admin"),  # an explicit union is still possible
])
async def test_a_provider_that_names_scp_gets_it_read(provider, echo_upstream, rsa_key, extra, scope, scp):
    token = rsa_key.sign(claims(scope or "", scp=scp))
    assert (await admin_status(provider, echo_upstream, token, extra))[0] == 200
    assert "read:admin" in echo_upstream.last.header("X-Auth-Scopes").split()
