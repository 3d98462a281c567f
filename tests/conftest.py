import pytest

pytest_plugins = ["tests.support.tls"]  # the TLS fixtures (certs, tls_gateway, bound_token) for every folder

from tests.support.keys import ProviderServer, SigningKey, claims
from tests.support.processes import GatewayProcess, RedisServer, start_flask_upstream, stop_process
from tests.support.upstream import EchoUpstream


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
    async with ProviderServer([rsa_key, ec_key]) as server:
        yield server


@pytest.fixture
async def echo_upstream():
    """The echo upstream (tests/support/upstream.py): records what reached it; behaviours by path."""
    async with EchoUpstream() as server:
        yield server


@pytest.fixture
def token(rsa_key):
    """A freshly signed RS256 token; keyword arguments go to claims()."""
    return lambda **kw: rsa_key.sign(claims(**kw))


@pytest.fixture
def bearer(token):
    return lambda **kw: {"Authorization": f"Bearer {token(**kw)}"}


@pytest.fixture
def gateway_process(tmp_path, rsa_key):
    """`await gateway_process(upstream_url, extra=...)`: a started gateway process, killed at teardown."""
    started: list[GatewayProcess] = []

    async def start(upstream_url: str, extra: str = "", provider_extra: str = "") -> GatewayProcess:
        process = GatewayProcess(tmp_path / f"gateway{len(started)}", upstream_url, rsa_key, extra,
                                 provider_extra=provider_extra)
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server (Debian's; `make test` installs it) on a free port, nothing persisted; stopped after."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
