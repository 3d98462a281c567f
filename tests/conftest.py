import pytest

from tests.support import ProviderServer, RedisServer, SigningKey, start_flask_upstream, stop_process


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")


@pytest.fixture(scope="session")
def other_rsa_key() -> SigningKey:
    return SigningKey.rsa("rsa-1")  # same kid, different key: a forger's


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return SigningKey.ec("ec-1")


@pytest.fixture(scope="session")
def flask_upstream(tmp_path_factory):
    """The real upstream Flask app under gunicorn, shared by the session."""
    log = tmp_path_factory.mktemp("upstream") / "gunicorn.log"
    process, url = start_flask_upstream(log)
    yield url
    stop_process(process)


@pytest.fixture
async def provider(rsa_key, ec_key):
    server = await ProviderServer([rsa_key, ec_key]).start()
    yield server
    await server.stop()


class EchoUpstream:
    """A real aiohttp upstream that answers 200 and remembers what reached it."""

    def __init__(self):
        self.requests = []

    async def handle(self, request):
        from aiohttp import web

        self.requests.append({"method": request.method, "path_qs": request.raw_path,
                              "headers": dict(request.headers)})
        return web.json_response({"ok": True})

    @property
    def last(self):
        return self.requests[-1]


@pytest.fixture
async def echo_upstream(aiohttp_server):
    from aiohttp import web

    echo = EchoUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo.handle)
    server = await aiohttp_server(app)
    echo.url = str(server.make_url("")).rstrip("/")
    return echo


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server (Debian's; `make test` installs it) on a free port, nothing persisted; stopped after."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
