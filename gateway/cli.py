"""`python -m gateway serve | check | token | devissuer`: the command-line contract."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .config_loader import ConfigError, load_config


def _serve(args: argparse.Namespace) -> int:
    from .server import run

    config = _load(args)
    if config is None:
        return 2
    try:
        run(config)
    except OSError as exc:
        print(f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror}; "
              "stop whatever uses that port or pass --listen HOST:PORT", file=sys.stderr)
        return 1
    return 0


def _load(args: argparse.Namespace):
    listen = args.listen or os.environ.get("GATEWAY_LISTEN") or None
    upstream = args.upstream or os.environ.get("GATEWAY_UPSTREAM") or None
    try:
        return load_config(args.config, listen=listen, upstream=upstream)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); the gateway does not start on an invalid config",
              file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 2
    print(f"{args.config}: OK, {len(config.providers)} provider(s), {len(config.routes.routes)} route(s)")
    for route in config.routes.routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "*"
        print(f"  line {route.line:>4}  {methods:<12} {route.pattern:<24} {route.access.describe()}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from .devissuer import DevKeys, access_token_claims

    keys = DevKeys.load_or_create(args.key_dir)
    claims = access_token_claims(args.scope, args.sub, args.ttl, args.issuer, args.audience)
    print(keys.mint(claims))
    return 0


def _devissuer(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .config_loader import parse_listen
    from .devissuer import DevKeys, issuer_app

    host, port = parse_listen(args.listen)
    keys = DevKeys.load_or_create(args.key_dir)
    issuer = args.issuer or f"http://{args.listen}/"
    print(f"DEVELOPMENT ISSUER on http://{args.listen}/ (issuer {issuer}): for local use only; "
          f"its keys in {args.key_dir}/ let anyone mint tokens", file=sys.stderr, flush=True)
    web.run_app(issuer_app(keys, issuer, args.audience), host=host, port=port, print=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .devissuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_DIR

    parser = argparse.ArgumentParser(prog="python -m gateway", description="JWT auth gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    check = commands.add_parser("check", help="validate a routes.yaml and print the effective rules")
    for sub in (serve, check):
        sub.add_argument("--config", required=True, help="path to routes.yaml")
        sub.add_argument("--listen", help="HOST:PORT to listen on (env GATEWAY_LISTEN)")
        sub.add_argument("--upstream", help="upstream URL (env GATEWAY_UPSTREAM)")
    serve.set_defaults(run=_serve)
    check.set_defaults(run=_check)

    token = commands.add_parser("token", help="print a token signed by the development issuer's key")
    token.add_argument("--scope", default="", help='space-separated scopes, e.g. "read:user read:admin"')
    token.add_argument("--sub", default="dev-user", help="subject (default dev-user)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--issuer", default=DEFAULT_ISSUER)
    token.add_argument("--audience", default=DEFAULT_AUDIENCE)
    token.add_argument("--key-dir", default=DEFAULT_KEY_DIR)
    token.set_defaults(run=_token)

    issuer = commands.add_parser("devissuer", help="run the local development issuer")
    issuer.add_argument("--listen", default="127.0.0.1:9000")
    issuer.add_argument("--issuer", help="issuer URL (default http://LISTEN/)")
    issuer.add_argument("--audience", default=DEFAULT_AUDIENCE)
    issuer.add_argument("--key-dir", default=DEFAULT_KEY_DIR)
    issuer.set_defaults(run=_devissuer)

    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return args.run(args)
