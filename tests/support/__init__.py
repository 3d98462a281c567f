"""The test doubles every suite shares, one of each kind; none mocks the gateway.

- `upstream.EchoUpstream`: the one upstream double (echo, plus streaming, stalls, resets... by path);
- `config`: the one routes.yaml builder (`config_text`, `provider_yaml`, `typed_config`);
- `gateway.running_gateway`: the one in-process gateway starter (`gateway_client` adds a client session,
  `running_operations` the admin listener and reloader);
- `keys`: real signing keys, signed tokens and a JWKS server (`ProviderServer`);
- `processes`: the Flask upstream under gunicorn, `python -m gateway serve`, free ports;
- `clock.FakeClock`, `rawhttp` (bytes on a socket, for requests a client library would fix).
"""
