"""Issue 12 item 2(b): no attempt can stop the routes.yaml watcher; a later valid edit still applies."""
import logging

from gateway.config.lint import load_checked
from gateway.config.loader import load_config
from gateway.ops.operations import Operations, ServeOptions
from tests.support.config import DEFAULT_ROUTES, OPERATED, RETRY_FAST, config_text, provider_yaml
from tests.support.gateway import eventually, gateway_client, metric, running_operations, write_atomically
from tests.support.keys import authorization, claims

PUBLIC_ADMIN = DEFAULT_ROUTES.replace("    access:\n      scopes: [read:admin]\n", "    access: public\n")


def reloads(gateway, result: str) -> float:
    return metric(gateway.metrics.render().decode(), "gateway_config_reloads_total", result=result)


async def admin_status(client) -> int:
    async with client.get("/admin") as response:
        return response.status


async def test_a_400_digit_number_saved_live_is_refused_and_a_later_edit_applies(tmp_path, provider, flask_upstream,
                                                                                 caplog):
    """Before: OverflowError escaped the watcher (it caught only ConfigError), so no later edit was ever applied."""
    path = tmp_path / "routes.yaml"
    entry = provider_yaml(provider.jwks_uri, extra=RETRY_FAST)
    path.write_text(config_text(flask_upstream, entry, extra=OPERATED))
    caplog.set_level(logging.ERROR, logger="gateway.reload")
    async with gateway_client(path) as (gateway, client), running_operations(gateway, path):
        huge = OPERATED + "\nlimits: {max_token_bytes: " + "9" * 400 + "}"
        write_atomically(path, config_text(flask_upstream, entry, extra=huge))
        await eventually(lambda: reloads(gateway, "refused") == 1, what="the watcher to refuse the 400-digit number")
        assert "'max_token_bytes' in limits is far too large" in caplog.text
        assert await admin_status(client) == 401
        write_atomically(path, config_text(flask_upstream, entry, PUBLIC_ADMIN, OPERATED))
        await eventually(lambda: reloads(gateway, "accepted") == 1, what="the later valid edit to apply")
        assert await admin_status(client) == 200


async def test_any_exception_in_an_attempt_is_logged_counted_refused_and_watching_goes_on(
        tmp_path, provider, flask_upstream, rsa_key, caplog):
    """A loader bug (here: one raised on purpose for one version) must cost that version only, never the watcher."""
    path = tmp_path / "routes.yaml"
    entry = provider_yaml(provider.jwks_uri, extra=RETRY_FAST)
    good = config_text(flask_upstream, entry, extra=OPERATED)
    path.write_text(good)

    def buggy_load():
        if "# trips the bug" in path.read_text():
            raise RuntimeError("a bug in the loader")
        return load_checked(lambda: load_config(path, dotenv=None))

    caplog.set_level(logging.ERROR, logger="gateway.reload")
    async with gateway_client(path) as (gateway, client):
        operations = Operations(gateway, ServeOptions(load=buggy_load, path=str(path), watch=True))
        await operations.start()
        try:
            write_atomically(path, good + "# trips the bug\n")
            await eventually(lambda: reloads(gateway, "refused") == 1, what="the attempt to be counted as refused")
            assert "RuntimeError: a bug in the loader" in caplog.text
            assert "the running rules stay in force" in caplog.text
            async with client.get("/user", headers=authorization(rsa_key.sign(claims()))) as response:
                assert response.status == 200  # still serving under the old rules
            write_atomically(path, config_text(flask_upstream, entry, PUBLIC_ADMIN, OPERATED))
            await eventually(lambda: reloads(gateway, "accepted") == 1, what="the later valid edit to apply")
            assert await admin_status(client) == 200
        finally:
            await operations.stop()
