"""Live reload: valid edits apply between requests, invalid ones are refused, new providers come with their keys."""
import asyncio
import logging

import aiohttp
from aiohttp import web

from gateway.ops.reload import ConfigWatch
from tests.ops.helpers import (
    ROUTES, default_provider, eventually, metric, operated_gateway, routes_yaml, write_atomically,
)
from tests.support import ProviderServer, SigningKey, claims, free_port


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def reloads(gateway, result: str) -> float:
    return metric(gateway.metrics.render().decode(), "gateway_config_reloads_total", result=result)


async def test_reload_under_load_drops_nothing(tmp_path, provider, flask_upstream, rsa_key):
    """Eight clients hammer /user while the rules are swapped back and forth: every answer is a 200."""
    path = tmp_path / "routes.yaml"
    v1 = routes_yaml(flask_upstream, default_provider(provider.jwks_uri))
    v2 = v1.replace("  - path: /admin\n", "  - path: /admin/**\n")
    path.write_text(v1)
    token = rsa_key.sign(claims("read:user"))
    async with operated_gateway(path, watch=False) as (gateway, operations), \
            aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as client:
        statuses: list[int] = []
        done = asyncio.Event()

        async def hammer():
            while not done.is_set():
                async with client.get("/user", headers=bearer(token)) as response:
                    await response.read()
                    statuses.append(response.status)

        clients = [asyncio.create_task(hammer()) for _ in range(8)]
        await eventually(lambda: len(statuses) >= 20, what="load to start")
        for round_ in range(6):
            write_atomically(path, v2 if round_ % 2 == 0 else v1)
            assert await operations.reloader.reload("test")
            seen = len(statuses)
            await eventually(lambda: len(statuses) >= seen + 30, what="requests between reloads")
        done.set()
        await asyncio.gather(*clients)  # any exception in a client fails the test here
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert reloads(gateway, "accepted") == 6


async def test_request_in_flight_finishes_under_the_rules_it_started_with(tmp_path, provider, rsa_key, aiohttp_server):
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request):
        entered.set()
        await release.wait()
        return web.json_response({"slow": True})

    app = web.Application()
    app.router.add_get("/slow", slow)
    upstream = await aiohttp_server(app)
    url = str(upstream.make_url("")).rstrip("/")
    open_rules = ROUTES + "  - path: /slow\n    access: authenticated\n"
    closed_rules = ROUTES + "  - path: /slow\n    access:\n      scopes: [read:slow]\n"
    path = tmp_path / "routes.yaml"
    path.write_text(routes_yaml(url, default_provider(provider.jwks_uri), open_rules))
    token = rsa_key.sign(claims("read:user"))
    async with operated_gateway(path, watch=False) as (gateway, operations), \
            aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as client:
        in_flight = asyncio.create_task(client.get("/slow", headers=bearer(token)))
        await asyncio.wait_for(entered.wait(), 10)
        old = gateway.generation
        write_atomically(path, routes_yaml(url, default_provider(provider.jwks_uri), closed_rules))
        assert await operations.reloader.reload("test")
        assert old.inflight == 1  # still running, under the old generation
        async with client.get("/slow", headers=bearer(token)) as response:
            assert response.status == 403  # a new request meets the new rules at once
        release.set()
        async with await in_flight as response:
            assert response.status == 200 and await response.json() == {"slow": True}
        assert await old.drained(5)


async def test_invalid_edit_is_refused_with_file_line_and_old_rules_keep_answering(
        tmp_path, provider, flask_upstream, rsa_key, caplog):
    path = tmp_path / "routes.yaml"
    good = routes_yaml(flask_upstream, default_provider(provider.jwks_uri))
    path.write_text(good)
    async with operated_gateway(path) as (gateway, operations), \
            aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as client:
        before = gateway.generation
        caplog.set_level(logging.ERROR, logger="gateway.reload")
        broken = good.replace("    access: authenticated", "    acess: authenticated")
        write_atomically(path, broken)  # noticed by the watcher, not called by the test
        await eventually(lambda: reloads(gateway, "refused") == 1, what="the watcher to refuse the broken file")
        line = broken.splitlines().index("    acess: authenticated") + 1
        assert f"{path}:{line}: unknown key 'acess'" in caplog.text
        assert gateway.generation is before
        async with client.get("/user") as response:
            assert response.status == 401  # /user is still protected
        async with client.get("/user", headers=bearer(rsa_key.sign(claims()))) as response:
            assert response.status == 200

        shadowing = good.replace(ROUTES, "  - path: /admin/**\n    access: public\n" + ROUTES)
        write_atomically(path, shadowing)  # a lint error refuses a version just like a load error
        await eventually(lambda: reloads(gateway, "refused") == 2, what="lint refusal")
        assert "protected route '/admin' is shadowed by the broader public route '/admin/**'" in caplog.text
        async with client.get("/admin") as response:
            assert response.status == 401


async def test_reload_that_adds_a_provider_fetches_its_keys_before_the_swap(tmp_path, provider, flask_upstream):
    second_key = SigningKey.rsa("second-1")
    second = await ProviderServer([second_key]).start()
    try:
        path = tmp_path / "routes.yaml"
        path.write_text(routes_yaml(flask_upstream, default_provider(provider.jwks_uri)))
        token = second_key.sign(claims(issuer="https://second.test/"))
        async with operated_gateway(path, watch=False) as (gateway, operations), \
                aiohttp.ClientSession(f"http://127.0.0.1:{gateway.port}") as client:
            async with client.get("/user", headers=bearer(token)) as response:
                assert response.status == 401  # an issuer it does not know yet
            kept = gateway.caches["test"]
            providers = default_provider(provider.jwks_uri) + [("second", "https://second.test/", second.jwks_uri)]
            write_atomically(path, routes_yaml(flask_upstream, providers))
            assert second.fetches == 0
            assert await operations.reloader.reload("test")
            assert second.fetches >= 1 and gateway.caches["second"].loaded  # fetched before the swap
            assert gateway.caches["test"] is kept  # unchanged providers keep their cache and keys
            async with client.get("/user", headers=bearer(token)) as response:
                assert response.status == 200  # the very first request after the swap

            dead = f"http://127.0.0.1:{free_port()}/jwks.json"
            write_atomically(path, routes_yaml(flask_upstream, providers + [("third", "https://third.test/", dead)]))
            assert not await operations.reloader.reload("test")  # no keys, no swap
            assert "third" not in gateway.caches
            async with client.get("/user", headers=bearer(token)) as response:
                assert response.status == 200
    finally:
        await second.stop()


async def test_reload_logs_say_what_is_true(tmp_path, provider, flask_upstream, caplog):
    """Issue 13 item 12: a refused reload's failing new provider does not claim 'protected routes answer 503' (the
    old rules serve on), and a lint warning already given (plain-http keys) is not repeated on every reload."""
    path = tmp_path / "routes.yaml"
    text = routes_yaml(flask_upstream, default_provider(provider.jwks_uri))
    path.write_text(text)
    caplog.set_level(logging.WARNING)
    async with operated_gateway(path, watch=False) as (gateway, operations):
        for _ in range(2):
            assert await operations.reloader.reload("test")
        assert "plain http" not in caplog.text  # given once at start (by `serve`), not per reload
        write_atomically(path, text.replace(ROUTES, ROUTES + "  - path: /docs/**\n    methods: [GET]\n    access: public\n"
                                            "  - path: /docs/drafts\n    access: authenticated\n"))
        assert await operations.reloader.reload("test")
        assert await operations.reloader.reload("test")
        assert caplog.text.count("requests to '/docs/drafts' are answered by") == 1  # a new warning: once

        dead = f"http://127.0.0.1:{free_port()}/jwks.json"
        providers = default_provider(provider.jwks_uri) + [("third", "https://third.test/", dead)]
        write_atomically(path, routes_yaml(flask_upstream, providers))
        assert not await operations.reloader.reload("test")
        assert "answer 503" not in caplog.text
        assert "provider third: key refresh failed" in caplog.text
        assert "the new rules are not applied without these keys" in caplog.text
        assert "the running rules stay in force" in caplog.text


async def test_watch_waits_for_a_settled_file(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text("a")
    watch = ConfigWatch(path)
    assert not watch.poll()
    path.write_text("b")
    assert not watch.poll()  # changed since the last look: maybe still being written
    assert watch.poll()  # the same bytes twice: act
    assert not watch.poll()  # and only once
    path.unlink()
    assert not watch.poll()  # a file being replaced is not an empty config


def test_restart_only_settings_leave_out_what_reload_applies():
    """Found in review: the warning named upstream/clients although their host and trusted proxies apply at once."""
    import dataclasses

    from gateway.config.loader import build_config
    from gateway.ops.reload import restart_only_changes
    from gateway.config.yaml_source import load_located
    from tests.support import DEFAULT_ROUTES, REPO, config_text, provider_yaml

    base = build_config(load_located(config_text("http://127.0.0.1:5000", provider_yaml("https://k.test/j"),
                                                 DEFAULT_ROUTES), {}), "<t>", REPO)
    live = dataclasses.replace(base, upstream=dataclasses.replace(base.upstream, host="api.internal"),
                               clients=dataclasses.replace(base.clients, trusted_proxies=base.clients.trusted_proxies + (1,)))
    assert restart_only_changes(base, live) == []
    moved = dataclasses.replace(base, upstream=dataclasses.replace(base.upstream, url="http://127.0.0.1:6000"))
    assert restart_only_changes(base, moved) == ["upstream"]
