# test_server.py (was proxy/test_drain.py) still uses the proxy fixtures; the next commit shares them from tests/conftest.py
from tests.proxy.conftest import bearer, gateway_process, token, upstream  # noqa: F401
