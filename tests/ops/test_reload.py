"""Live reload: valid edits apply between requests, invalid ones are refused, new providers come with their keys."""
import asyncio
import logging


from gateway.ops.reload import ConfigWatch
from tests.support.config import DEFAULT_ROUTES, OPERATED, RETRY_FAST, config_text, provider_yaml, typed_config
from tests.support.gateway import eventually, gateway_client, metric, running_operations, write_atomically
from tests.support.keys import ProviderServer, SigningKey, authorization, claims
from tests.support.processes import free_port



def reloads(gateway, result: str) -> float:
    return metric(gateway.metrics.render().decode(), "gateway_config_reloads_total", result=result)


async def test_reload_under_load_drops_nothing(tmp_path, provider, flask_upstream, rsa_key):
    """Eight clients hammer /user while the rules are swapped back and forth: every answer is a 200."""
    path = tmp_path / "routes.yaml"
    v1 = config_text(flask_upstream, provider_yaml(provider.jwks_uri, extra=RETRY_FAST), extra=OPERATED)
    v2 = v1.replace("  - path: /admin\n", "  - path: /admin/**\n")
    path.write_text(v1)
    token = rsa_key.sign(claims("read:user"))
    async with gateway_client(path) as (gateway, client), running_operations(gateway, path, watch=False) as operations:
        statuses: list[int] = []
        done = asyncio.Event()

        async def hammer():
            while not done.is_set():
                async with client.get("/user", headers=authorization(token)) as response:
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


async def test_request_in_flight_finishes_under_the_rules_it_started_with(tmp_path, provider, rsa_key, echo_upstream):
    open_rules = DEFAULT_ROUTES + "  - path: /hold\n    access: authenticated\n"
    closed_rules = DEFAULT_ROUTES + "  - path: /hold\n    access:\n      scopes: [read:slow]\n"
    path = tmp_path / "routes.yaml"
    provider_entry = provider_yaml(provider.jwks_uri, extra=RETRY_FAST)
    path.write_text(config_text(echo_upstream.url, provider_entry, open_rules, OPERATED))
    token = rsa_key.sign(claims("read:user"))
    async with gateway_client(path) as (gateway, client), running_operations(gateway, path, watch=False) as operations:
        in_flight = asyncio.create_task(client.get("/hold", headers=authorization(token)))
        await asyncio.wait_for(echo_upstream.controls.held.wait(), 10)
        old = gateway.generation
        write_atomically(path, config_text(echo_upstream.url, provider_entry, closed_rules, OPERATED))
        assert await operations.reloader.reload("test")
        assert old.inflight == 1  # still running, under the old generation
        async with client.get("/hold", headers=authorization(token)) as response:
            assert response.status == 403  # a new request meets the new rules at once
        echo_upstream.controls.release.set()
        async with await in_flight as response:
            assert response.status == 200 and await response.text() == "held 0"
        assert await old.drained(5)


async def test_invalid_edit_is_refused_with_file_line_and_old_rules_keep_answering(
        tmp_path, provider, flask_upstream, rsa_key, caplog):
    path = tmp_path / "routes.yaml"
    good = config_text(flask_upstream, provider_yaml(provider.jwks_uri, extra=RETRY_FAST), extra=OPERATED)
    path.write_text(good)
    async with gateway_client(path) as (gateway, client), running_operations(gateway, path):
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
        async with client.get("/user", headers=authorization(rsa_key.sign(claims()))) as response:
            assert response.status == 200

        shadowing = good.replace(DEFAULT_ROUTES, "  - path: /admin/**\n    access: public\n" + DEFAULT_ROUTES)
        write_atomically(path, shadowing)  # a lint error refuses a version just like a load error
        await eventually(lambda: reloads(gateway, "refused") == 2, what="lint refusal")
        assert "protected route '/admin' is shadowed by the broader public route '/admin/**'" in caplog.text
        async with client.get("/admin") as response:
            assert response.status == 401


async def test_reload_that_adds_a_provider_fetches_its_keys_before_the_swap(tmp_path, provider, flask_upstream):
    second_key = SigningKey.rsa("second-1")
    async with ProviderServer([second_key]) as second:
        path = tmp_path / "routes.yaml"
        path.write_text(config_text(flask_upstream, provider_yaml(provider.jwks_uri, extra=RETRY_FAST), extra=OPERATED))
        token = second_key.sign(claims(issuer="https://second.test/"))
        async with gateway_client(path) as (gateway, client), \
                running_operations(gateway, path, watch=False) as operations:
            async with client.get("/user", headers=authorization(token)) as response:
                assert response.status == 401  # an issuer it does not know yet
            kept = gateway.caches["test"]
            providers = [provider_yaml(provider.jwks_uri, extra=RETRY_FAST),
                         provider_yaml(second.jwks_uri, "second", "https://second.test/", extra=RETRY_FAST)]
            write_atomically(path, config_text(flask_upstream, providers, extra=OPERATED))
            assert second.fetches == 0
            assert await operations.reloader.reload("test")
            assert second.fetches >= 1 and gateway.caches["second"].loaded  # fetched before the swap
            assert gateway.caches["test"] is kept  # unchanged providers keep their cache and keys
            async with client.get("/user", headers=authorization(token)) as response:
                assert response.status == 200  # the very first request after the swap

            dead = f"http://127.0.0.1:{free_port()}/jwks.json"
            third = provider_yaml(dead, "third", "https://third.test/", extra=RETRY_FAST)
            write_atomically(path, config_text(flask_upstream, providers + [third], extra=OPERATED))
            assert not await operations.reloader.reload("test")  # no keys, no swap
            assert "third" not in gateway.caches
            async with client.get("/user", headers=authorization(token)) as response:
                assert response.status == 200


async def test_reload_logs_say_what_is_true(tmp_path, provider, flask_upstream, caplog):
    """Issue 13 item 12: a refused reload's failing new provider does not claim 'protected routes answer 503' (the
    old rules serve on), and a lint warning already given (plain-http keys) is not repeated on every reload."""
    path = tmp_path / "routes.yaml"
    first = provider_yaml(provider.jwks_uri, extra=RETRY_FAST)
    text = config_text(flask_upstream, first, extra=OPERATED)
    path.write_text(text)
    caplog.set_level(logging.WARNING)
    async with gateway_client(path) as (gateway, _), running_operations(gateway, path, watch=False) as operations:
        for _ in range(2):
            assert await operations.reloader.reload("test")
        assert "plain http" not in caplog.text  # given once at start (by `serve`), not per reload
        write_atomically(path, text.replace(DEFAULT_ROUTES, DEFAULT_ROUTES + "  - path: /docs/**\n    methods: [GET]\n    access: public\n"
                                            "  - path: /docs/drafts\n    access: authenticated\n"))
        assert await operations.reloader.reload("test")
        assert await operations.reloader.reload("test")
        assert caplog.text.count("requests to '/docs/drafts' are answered by") == 1  # a new warning: once

        dead = f"http://127.0.0.1:{free_port()}/jwks.json"
        third = provider_yaml(dead, "third", "https://third.test/", extra=RETRY_FAST)
        write_atomically(path, config_text(flask_upstream, [first, third], extra=OPERATED))
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

    from gateway.ops.reload import restart_only_changes

    base = typed_config(config_text("http://127.0.0.1:5000", provider_yaml("https://k.test/j")), {})
    live = dataclasses.replace(base, upstream=dataclasses.replace(base.upstream, host="api.internal"),
                               clients=dataclasses.replace(base.clients, trusted_proxies=base.clients.trusted_proxies + (1,)))
    assert restart_only_changes(base, live) == []
    moved = dataclasses.replace(base, upstream=dataclasses.replace(base.upstream, url="http://127.0.0.1:6000"))
    assert restart_only_changes(base, moved) == ["upstream"]
