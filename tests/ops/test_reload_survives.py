"""Issue 12 item 2(b): no attempt can stop the routes.yaml watcher; a later valid edit still applies."""
import logging

import aiohttp

from gateway.config.lint import load_checked
from gateway.config.loader import load_config
from gateway.ops.operations import Operations, ServeOptions
from gateway.ops.server import Gateway
from tests.ops.helpers import ROUTES, default_provider, eventually, metric, routes_yaml, write_atomically
from tests.support import SigningKey, claims

PUBLIC_ADMIN = ROUTES.replace("    access:\n      scopes: [read:admin]\n", "    access: public\n")


def reloads(gateway, result: str) -> float:
    return metric(gateway.metrics.render().decode(), "gateway_config_reloads_total", result=result)


async def admin_status(gateway) -> int:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{gateway.port}/admin") as response:
        return response.status


class WatchedGateway:
    """A gateway with its file watcher, loading through `load` (the real loader unless a test wraps it)."""

    def __init__(self, path, load):
        self.path, self.load = path, load

    async def __aenter__(self):
        config, _ = self.load()
        self.gateway = Gateway(config)
        self.operations = Operations(self.gateway, ServeOptions(load=self.load, path=str(self.path), watch=True))
        await self.gateway.start()
        await self.operations.start()
        return self.gateway

    async def __aexit__(self, *exc):
        await self.operations.stop()
        await self.gateway.stop()


def real_load(path):
    return lambda: load_checked(lambda: load_config(path, dotenv=None))


async def test_a_400_digit_number_saved_live_is_refused_and_a_later_edit_applies(tmp_path, provider, flask_upstream,
                                                                                 caplog):
    """Before: OverflowError escaped the watcher (it caught only ConfigError), so no later edit was ever applied."""
    path = tmp_path / "routes.yaml"
    good = routes_yaml(flask_upstream, default_provider(provider.jwks_uri))
    path.write_text(good)
    caplog.set_level(logging.ERROR, logger="gateway.reload")
    async with WatchedGateway(path, real_load(path)) as gateway:
        write_atomically(path, good.replace("reload: {interval: 0.05}",
                                            "reload: {interval: 0.05}\nlimits: {max_token_bytes: " + "9" * 400 + "}"))
        await eventually(lambda: reloads(gateway, "refused") == 1, what="the watcher to refuse the 400-digit number")
        assert "'max_token_bytes' in limits is far too large" in caplog.text
        assert await admin_status(gateway) == 401
        write_atomically(path, routes_yaml(flask_upstream, default_provider(provider.jwks_uri), PUBLIC_ADMIN))
        await eventually(lambda: reloads(gateway, "accepted") == 1, what="the later valid edit to apply")
        assert await admin_status(gateway) == 200


async def test_any_exception_in_an_attempt_is_logged_counted_refused_and_watching_goes_on(
        tmp_path, provider, flask_upstream, rsa_key, caplog):
    """A loader bug (here: one raised on purpose for one version) must cost that version only, never the watcher."""
    path = tmp_path / "routes.yaml"
    good = routes_yaml(flask_upstream, default_provider(provider.jwks_uri))
    path.write_text(good)
    load = real_load(path)

    def buggy_load():
        if "# trips the bug" in path.read_text():
            raise RuntimeError("a bug in the loader")
        return load()

    caplog.set_level(logging.ERROR, logger="gateway.reload")
    async with WatchedGateway(path, buggy_load) as gateway:
        write_atomically(path, good + "# trips the bug\n")
        await eventually(lambda: reloads(gateway, "refused") == 1, what="the attempt to be counted as refused")
        assert "RuntimeError: a bug in the loader" in caplog.text
        assert "the running rules stay in force" in caplog.text
        async with aiohttp.ClientSession() as client, client.get(
                f"http://127.0.0.1:{gateway.port}/user",
                headers={"Authorization": f"Bearer {rsa_key.sign(claims())}"}) as response:
            assert response.status == 200  # still serving under the old rules
        write_atomically(path, routes_yaml(flask_upstream, default_provider(provider.jwks_uri), PUBLIC_ADMIN))
        await eventually(lambda: reloads(gateway, "accepted") == 1, what="the later valid edit to apply")
        assert await admin_status(gateway) == 200
