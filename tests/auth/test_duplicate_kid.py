"""Issue 12 item 6: every JWK sharing a kid is disabled, also when one copy is skipped for another reason."""
import aiohttp
import pytest

from gateway.auth.jwks_cache import build_keys
from tests.support.config import config_text, provider_yaml
from tests.support.gateway import running_gateway
from tests.support.keys import ProviderServer, SigningKey, claims

USABLE = SigningKey.rsa("a")
OTHER_COPIES = {
    "use: enc": {**SigningKey.rsa("a").public_jwk, "use": "enc"},
    "1024-bit RSA": SigningKey.rsa("a", bits=1024).public_jwk,
    "key_ops without verify": {**SigningKey.rsa("a").public_jwk, "key_ops": ["encrypt"]},
    "EC under RS256 only": SigningKey.ec("a").public_jwk,
}


@pytest.mark.parametrize("reason", list(OTHER_COPIES))
@pytest.mark.parametrize("order", ["usable first", "skipped first"])
def test_a_skipped_copy_of_a_kid_disables_the_usable_one(reason, order):
    """Before: a usable 'a' plus a skipped 'a' left 'a' usable."""
    copies = [USABLE.public_jwk, OTHER_COPIES[reason]]
    if order == "skipped first":
        copies.reverse()
    keys, skipped, _ = build_keys({"keys": copies + [SigningKey.rsa("b").public_jwk]}, ("RS256",))
    assert set(keys) == {"b"}
    assert sum("kid appears more than once" in reason for reason in skipped) == 2


async def test_a_token_for_a_kid_with_an_enc_twin_is_refused(echo_upstream):
    server = await ProviderServer([SigningKey.rsa("b")]).start()
    server.jwks = {"keys": [USABLE.public_jwk, OTHER_COPIES["use: enc"], SigningKey.rsa("b").public_jwk]}
    try:
        text = config_text(echo_upstream.url, provider_yaml(server.jwks_uri), "  - path: /user\n    access: authenticated\n")
        async with running_gateway(text) as gw, aiohttp.ClientSession(f"http://127.0.0.1:{gw.port}") as client:
            async with client.get("/user", headers={"Authorization": f"Bearer {USABLE.sign(claims())}"}) as response:
                assert response.status == 401
                assert (await response.json())["code"] == "invalid_signature"
    finally:
        await server.stop()
