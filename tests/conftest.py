import pytest

from tests.support import ProviderServer, SigningKey, start_flask_upstream, stop_process


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
