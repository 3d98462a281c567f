"""The fast path and the general path give the same answers and forward the same bytes.

A plain request (bodiless GET/DELETE/OPTIONS, keep-alive HTTP/1.1) is decided
by `AuthFilter.admit` (a token to verify by `admit_pending`; a request line and
token admitted before from its decision cache) and relayed by
ops/client_connection.py without aiohttp's request handler; anything else
goes through aiohttp and `AuthFilter.handle`.
The same requests are sent down both, on one connection each: the first one
stays on the fast path, the second is handed to aiohttp by a first `HEAD`
(which the fast path never serves), so every later request on it takes the
general path.  Answers are compared whole (status, headers but Date, body),
and for forwarded requests so is what the upstream received.
"""
import asyncio

from tests.security.stack import ROUTES, running_stack
from tests.support import rawhttp


def _requests(stack) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(method, target, headers)."""
    user = stack.token("read:user")
    admin = stack.token("read:admin", key=stack.ec_key)
    expired = stack.token("read:user", ttl=-600)
    spoofing = [("X-Auth-Subject", "admin"), ("x_auth_scopes", "read:admin"), ("X-Forwarded-For", "10.0.0.1"),
                ("Forwarded", "for=10.0.0.1"), ("X-Real-IP", "10.0.0.1"), ("X-Original-URL", "/admin/x"),
                ("Connection", "keep-alive, X-Hidden"), ("X-Hidden", "dropped"), ("Proxy-Authorization", "Basic eA=="),
                ("X-Custom", "kept"), ("X-Request-Id", "client-chosen-id-7")]
    bearer = lambda token: [("Authorization", f"Bearer {token}")]  # noqa: E731
    return [
        ("GET", "/", []),
        ("GET", "/public/a/b?x=1&y=%2F", [("Accept", "application/json")]),
        ("GET", "/user/me", bearer(user) + spoofing),
        ("GET", "/user/me?q=1", [("Authorization", f"bearer {user}")]),
        ("GET", "/admin/x", bearer(user)),  # 403 insufficient_scope, from the cache
        ("GET", "/admin/x", bearer(admin)),
        ("DELETE", "/admin/x", bearer(admin)),  # 403: delete:admin needed
        ("OPTIONS", "/public/x", []),
        ("GET", "/user/me", []),  # 401, no token
        ("GET", "/user/me", [("Authorization", f"Bearer {user}"), ("Authorization", f"Bearer {user}")]),
        ("GET", "/user/me", [("Authorization", "Bearer not-a-jwt")]),
        ("GET", "/user/me", [("Authorization", f"Basic {user}")]),
        ("GET", "/nowhere", bearer(user)),  # 404
        ("GET", "/public/../admin/x", bearer(user)),
        ("GET", "/user/%2e%2e/admin/x", bearer(admin)),
        ("GET", "/user//me", bearer(user)),
        ("GET", "/user/me", bearer(expired)),  # not cacheable: verified (and refused) every time
        ("GET", "/user/me", [("Authorization", f"DPoP {user}")]),  # a DPoP scheme: the general path
        ("GET", "/public/latin", [("X-Latin", "ad\xffmin")]),  # not UTF-8: goes on byte for byte
    ]


def _normal(answer: rawhttp.Answer) -> tuple:
    headers = [(k.lower(), v) for k, v in answer.headers if k.lower() != "date"]
    body = answer.body
    if answer.status == 200 and answer.is_json and "headers" in answer.json():
        seen = answer.json()  # the echo upstream's record of what reached it: ids generated per request vary
        seen["headers"] = [[k, "<generated>" if k.lower() == "x-request-id" and v != "client-chosen-id-7" else v]
                           for k, v in seen["headers"]]
        body = seen
    return answer.status, headers, body


def _send_all(port: int, raws: list[bytes], hand_off_first: bool) -> list[rawhttp.Answer]:
    connection = rawhttp.Connection(port)
    try:
        if hand_off_first:
            connection.request(rawhttp.build("HEAD", "/public/x"), method="HEAD")
        return [connection.request(raw, method=raw.split(b" ", 1)[0].decode()) for raw in raws]
    finally:
        connection.close()


async def test_fast_and_general_paths_answer_alike(stack):
    requests = _requests(stack)
    raws = [rawhttp.build(method, target, headers) for method, target, headers in requests]
    for _ in range(2):  # tokens verified, then admissions remembered (pipeline/decision_cache.py)
        await asyncio.to_thread(_send_all, stack.port, raws, False)

    generation = stack.gateway.generation
    remembered = generation.filter.decisions.hits
    general = generation.filter.handle
    calls = []

    async def counted(request):
        calls.append(request.raw_path)
        return await general(request)

    generation.filter.handle = counted
    fast = await asyncio.to_thread(_send_all, stack.port, raws, False)
    fast_calls, calls[:] = list(calls), []
    from_cache = generation.filter.decisions.hits - remembered
    slow = await asyncio.to_thread(_send_all, stack.port, raws, True)

    assert fast_calls == []  # all decided by admit (expired and DPoP tokens by admit_pending), none by handle
    # every forwarded one but the OPTIONS came from the decision cache: its answers are compared below too
    assert from_cache == sum(a.status == 200 for (method, *_), a in zip(requests, fast) if method != "OPTIONS") > 5
    assert len(calls) == len(raws) + 1  # the HEAD and every request after it: aiohttp's handler, the general path
    assert [a.status for a in fast] == [a.status for a in slow]
    assert {a.status for a in fast} >= {200, 400, 401, 403, 404}, [a.status for a in fast]  # the list means something
    for request, one, other in zip(requests, fast, slow):
        assert _normal(one) == _normal(other), request[:2]
    latin = fast[[target for _, target, _ in requests].index("/public/latin")]
    assert ["X-Latin", "ad\xffmin"] in latin.json()["headers"]  # the 0xFF byte arrived (the echo reads it as Latin-1)


async def test_an_upstream_failure_on_a_cors_route_is_answered_alike(rsa_key, ec_key):
    """A 502 for an admitted request on a route with CORS carries the route's CORS headers on both paths, so a
    browser sees the 502 and not a CORS failure (the fast path's refusal had none)."""
    routes = ROUTES + "  - path: /reset\n    access: public\n    cors: {allow_origins: [https://app.test]}\n"
    async with running_stack(rsa_key, ec_key, routes=routes) as stack:
        raws = [rawhttp.build("GET", "/reset", [("Origin", "https://app.test")])]
        fast = await asyncio.to_thread(_send_all, stack.port, raws, False)
        slow = await asyncio.to_thread(_send_all, stack.port, raws, True)
        assert fast[0].status == slow[0].status == 502
        assert fast[0].header("Access-Control-Allow-Origin") == "https://app.test"
        assert _normal(fast[0]) == _normal(slow[0])
