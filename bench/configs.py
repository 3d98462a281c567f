"""Config files for every participant, written per run into the work folder.

- nginx as the static upstream (`return 200`, one worker, no logs);
- nginx as a plain reverse proxy with upstream keep-alive, no auth (the ceiling);
- HAProxy 2.6 with `jwt_verify`, as close to the gateway's /admin rule as its
  converters allow (what it cannot do is listed in HAPROXY_LIMITS);
- the gateway's routes.yaml: config/routes.yaml's three routes, with the
  bench's own key given inline through `jwks_file` instead of discovery.
"""
from __future__ import annotations

import json
from pathlib import Path

from .tokens import AUDIENCE, ISSUER

SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "routes.yaml"


def shipped_routes() -> str:
    """The `routes:` items of config/routes.yaml, as text, so the bench measures the rules users run."""
    lines = SHIPPED_CONFIG.read_text().splitlines()
    start = lines.index("routes:") + 1
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i].startswith((" ", "#"))), len(lines))
    return "\n".join(lines[start:end]) + "\n"

ADMIN_BODY = '{"msg":"Hello admin!"}'
LEEWAY = 1  # seconds, the same for the gateway and HAProxy; one machine has one clock

HAPROXY_LIMITS = [
    "one static PEM key: no JWKS fetch, no kid-based key choice, no rotation",
    "aud must be a single string (a JSON-array aud is refused, not searched)",
    "scopes only from the space-separated `scope` string: `scp` lists and other claims are not read",
    "no strict JSON: duplicate claim names are not refused",
    "no iat-in-the-future check and no typ/crit header checks",
    "no per-failure RFC 6750 error_description, one generic 401 body",
    "no verified-token cache: the RSA signature is checked on every request",
]


def _common_nginx(work: Path, name: str) -> str:
    tmp = work / f"{name}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return f"""
worker_processes 1;
daemon off;
pid {work / (name + '.pid')};
error_log {work / (name + '.error.log')} warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {tmp / 'body'};
  proxy_temp_path {tmp / 'proxy'};
  fastcgi_temp_path {tmp / 'fastcgi'};
  uwsgi_temp_path {tmp / 'uwsgi'};
  scgi_temp_path {tmp / 'scgi'};
  keepalive_requests 1000000;
  keepalive_timeout 75s;
"""


def nginx_static(work: Path, port: int) -> Path:
    """The tiny static upstream: every path answers 200 with the admin JSON body."""
    text = _common_nginx(work, "nginx-static") + f"""
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{
      default_type application/json;
      return 200 '{ADMIN_BODY}';
    }}
  }}
}}
"""
    path = work / "nginx-static.conf"
    path.write_text(text)
    return path


def nginx_proxy(work: Path, routes: dict[int, int]) -> Path:
    """A plain proxy: one server per (listen port -> upstream port), keep-alive upstream pool."""
    servers = []
    for listen, upstream in routes.items():
        servers.append(f"""
  upstream up_{listen} {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{listen} backlog=4096;
    location / {{
      proxy_pass http://up_{listen};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering on;
    }}
  }}""")
    path = work / "nginx-proxy.conf"
    path.write_text(_common_nginx(work, "nginx-proxy") + "".join(servers) + "\n}\n")
    return path


def haproxy(work: Path, routes: dict[int, int], public_pem: Path) -> Path:
    """HAProxy 2.6 with jwt_verify on /admin and /user, public /; one thread.

    Per request on /admin: Bearer present, alg is RS256, RS256 signature
    verifies with the key, iss and aud are ours, exp (with leeway) is in the
    future, nbf (when present) is not, and `read:admin` is one whole word of
    the `scope` claim.  Client X-Auth-* headers (any case, `_` or `-`) are
    dropped and the verified identity is sent upstream, as the gateway does.
    """
    frontends = []
    for listen, upstream in routes.items():
        frontends.append(f"""
frontend fe_{listen}
  bind 127.0.0.1:{listen}
  default_backend be_{listen}
  # identity headers are the proxy's to set: drop the client's, in any spelling
  http-request del-header ^x[-_]auth[-_] -m reg
  acl route_public path /
  acl route_user   path /user
  acl route_admin  path /admin
  http-request return status 404 content-type application/json string '{{"code":"not_found"}}' unless route_public or route_user or route_admin
  http-request return status 405 content-type application/json string '{{"code":"method_not_allowed"}}' hdr Allow "GET, HEAD" if route_public !METH_GET
  http-request set-var(txn.bearer) http_auth_bearer if route_user or route_admin
  http-request return status 401 content-type application/json string '{{"code":"authorization_header_missing"}}' hdr WWW-Authenticate 'Bearer realm="api"' if route_user !{{ var(txn.bearer) -m found }} or route_admin !{{ var(txn.bearer) -m found }}
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.nbf) var(txn.bearer),jwt_payload_query('$.nbf','int') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.scope) var(txn.bearer),jwt_payload_query('$.scope') if {{ var(txn.bearer) -m found }}
  http-request set-var(txn.now) date if {{ var(txn.bearer) -m found }}
  http-request return status 401 content-type application/json string '{{"code":"invalid_header"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.bearer) -m found }} !{{ var(txn.alg) -m str RS256 }}
  http-request return status 401 content-type application/json string '{{"code":"invalid_signature"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.bearer) -m found }} !{{ var(txn.bearer),jwt_verify(txn.alg,"{public_pem}") -m int 1 }}
  http-request return status 401 content-type application/json string '{{"code":"invalid_claims"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.bearer) -m found }} !{{ var(txn.iss) -m str {ISSUER} }} or {{ var(txn.bearer) -m found }} !{{ var(txn.aud) -m str {AUDIENCE} }}
  http-request return status 401 content-type application/json string '{{"code":"invalid_claims"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.bearer) -m found }} !{{ var(txn.exp) -m found }}
  http-request return status 401 content-type application/json string '{{"code":"token_expired"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.bearer) -m found }} {{ var(txn.exp),add({LEEWAY}),sub(txn.now) -m int lt 0 }}
  http-request return status 401 content-type application/json string '{{"code":"invalid_claims"}}' hdr WWW-Authenticate 'Bearer realm="api", error="invalid_token"' if {{ var(txn.nbf) -m found }} {{ var(txn.nbf),sub({LEEWAY}),sub(txn.now) -m int gt 0 }}
  http-request return status 403 content-type application/json string '{{"code":"insufficient_scope"}}' hdr WWW-Authenticate 'Bearer error="insufficient_scope", scope="read:admin"' if route_admin !{{ var(txn.scope) -m reg (^|[[:space:]])read:admin([[:space:]]|$) }}
  http-request del-header Authorization
  http-request set-header X-Auth-Subject %[var(txn.bearer),jwt_payload_query('$.sub')] if {{ var(txn.bearer) -m found }}
  http-request set-header X-Auth-Issuer %[var(txn.iss)] if {{ var(txn.bearer) -m found }}
  http-request set-header X-Auth-Scopes %[var(txn.scope)] if {{ var(txn.bearer) -m found }}
  http-request set-header X-Auth-Claims %[var(txn.bearer),field(2,.)] if {{ var(txn.bearer) -m found }}

backend be_{listen}
  http-reuse always
  server app 127.0.0.1:{upstream} maxconn 64
""")
    text = f"""# HAProxy 2.6 jwt_verify: the bench's stand-in for "our /admin rule" (see bench/configs.py)
global
  nbthread 1
  maxconn 8192
  log stderr format raw local0 err

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 75s
""" + "".join(frontends)
    path = work / "haproxy.cfg"
    path.write_text(text)
    return path


def gateway(work: Path, name: str, upstream_port: int, jwks: dict, algorithms: tuple = ("RS256",)) -> Path:
    """routes.yaml for one gateway instance (the listen address comes from --listen)."""
    jwks_path = work / f"{name}-jwks.json"
    jwks_path.write_text(json.dumps(jwks))
    text = f"""# Written by bench/configs.py: config/routes.yaml's rules, keys inline
listen: 127.0.0.1:8080
upstream: http://127.0.0.1:{upstream_port}
providers:
  - name: bench
    issuer: {ISSUER}
    audience: {AUDIENCE}
    jwks_file: {jwks_path.name}
    algorithms: [{", ".join(algorithms)}]
    leeway: {LEEWAY}
routes:
""" + shipped_routes()
    path = work / f"{name}.yaml"
    path.write_text(text)
    return path
