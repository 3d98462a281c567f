"""`gateway serve | check | explain | test | token | dpop-proof | devissuer | devcerts` (or `python -m gateway ...`):
the command-line contract."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable

from gateway.observe import access_log

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig

log = logging.getLogger("gateway")
WORKER_DIR_ENV = "GATEWAY_WORKER_DIR"  # set by the --workers supervisor for its children only


def _loader(args: argparse.Namespace) -> Callable[[], tuple[GatewayConfig, list[str]]]:
    """Load and lint with the command line's overrides: the same call at start and on every reload."""
    from gateway.config.lint import load_checked
    from gateway.config.loader import load_config

    overrides = {
        "listen": getattr(args, "listen", None) or os.environ.get("GATEWAY_LISTEN") or None,
        "upstream": getattr(args, "upstream", None) or os.environ.get("GATEWAY_UPSTREAM") or None,
        "admin": getattr(args, "admin", None) or os.environ.get("GATEWAY_ADMIN") or None,
        "tls_cert": getattr(args, "tls_cert", None) or os.environ.get("GATEWAY_TLS_CERT") or None,
        "tls_key": getattr(args, "tls_key", None) or os.environ.get("GATEWAY_TLS_KEY") or None,
    }
    return lambda: load_checked(lambda: load_config(args.config, **overrides))


def _load(load: Callable[[], tuple[GatewayConfig, list[str]]]):
    from gateway.config.loader import ConfigError

    try:
        return load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); the gateway does not start on an invalid config",
              file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    load = _loader(args)
    worker_dir = os.environ.get(WORKER_DIR_ENV)
    if worker_dir is not None:
        from gateway.ops.workers import worker_loader

        load = worker_loader(load)
    loaded = _load(load)
    if loaded is None:
        return 2
    config, warnings = loaded
    for warning in warnings:
        log.warning("%s", warning)
    if args.workers > 1 and worker_dir is None:
        from gateway.ops.workers import supervise

        return supervise(config, args.workers, _worker_command(args), args.config)
    from gateway.ops.operations import ServeOptions
    from gateway.ops.server import StartupError, run

    in_worker = worker_dir is not None
    try:
        run(config, ServeOptions(load=load, path=args.config, admin=not in_worker, watch=not in_worker,
                                 worker_dir=worker_dir, reuse_port=in_worker, warnings=tuple(warnings)))
    except StartupError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the listen or admin port is taken: one line, not a traceback
        print(f"cannot listen: {exc}; stop whatever uses that port, or pass --listen HOST:PORT "
              "(--admin HOST:PORT for the admin listener)", file=sys.stderr)
        return 1
    return 0


def _worker_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "gateway", "serve", "--config", args.config, "--log-format", args.log_format]
    for flag in ("listen", "upstream", "admin", "tls_cert", "tls_key"):
        if getattr(args, flag):
            command += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return command


def _check(args: argparse.Namespace) -> int:
    from gateway.tools.check import provider_report, rules_table

    loaded = _load(_loader(args))
    if loaded is None:
        return 2
    config, warnings = loaded
    notes, unreachable, wrong = ([], [], []) if args.offline else asyncio.run(provider_report(config))
    if wrong:  # a provider that names another issuer never gives keys: as fatal as a load error
        for problem in wrong:
            print(problem, file=sys.stderr)
        print(f"{len(wrong)} problem(s); the gateway would answer 503 on the routes of that provider",
              file=sys.stderr)
        return 2
    warnings = warnings + unreachable
    summary = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"{args.config}: OK, {len(config.providers)} provider(s), {len(config.routes.routes)} route(s){summary}")
    for line in warnings + notes:
        print(f"  {line}")
    print()
    for line in rules_table(config):
        print(f"  {line}")
    return 1 if args.strict and warnings else 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.tools.explain import explain

    claims = None
    if args.claims is not None:
        try:
            claims = json.loads(args.claims)
        except ValueError as exc:
            claims = exc
        if not isinstance(claims, dict):
            print(f"--claims must be a JSON object such as '{{\"sub\": \"alice\", \"scope\": \"read:user\"}}' "
                  f"({claims})", file=sys.stderr)
            return 2
    loaded = _load(_loader(args))
    if loaded is None:
        return 2
    _, lines = asyncio.run(explain(loaded[0], args.method, args.path, token=args.token, claims=claims))
    print("\n".join(lines))
    return 0


def _test(args: argparse.Namespace) -> int:
    from gateway.config.loader import ConfigError
    from gateway.tools.rule_tests import load_cases, report, run_cases

    loaded = _load(_loader(args))
    if loaded is None:
        return 2
    try:
        cases = load_cases(args.tests)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    results = asyncio.run(run_cases(loaded[0], cases))
    print("\n".join(report(loaded[0], args.tests, results, args.verbose)))
    return 0 if all(r.passed for r in results) else 1


def _token(args: argparse.Namespace) -> int:
    from gateway.tools.dev_keys import NoKey, access_token_claims
    from gateway.tools.dev_tokens import ClaimArgumentError, extra_claims, key_for_token, no_key_message

    try:  # the arguments first: a wrong one is named even where there is no key yet
        extra = extra_claims(args.claims, args.claim)
    except ClaimArgumentError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.cert_bound is not None and args.dpop_key is not None:
        print("--cert-bound and --dpop-key: a token is bound one way, choose one", file=sys.stderr)
        return 2
    if args.dpop_key is not None:
        extra = {**extra, "cnf": {"jkt": _client_key(args.dpop_key).jkt}}
    if args.cert_bound is not None:
        from gateway.tools.devcerts import certificate_confirmation

        try:
            extra = {**extra, "cnf": certificate_confirmation(args.cert_bound)}
        except (OSError, ValueError) as exc:
            print(f"--cert-bound {args.cert_bound}: {exc}", file=sys.stderr)
            return 2
    try:
        keys, created = key_for_token(args.key_dir, args.new_key)
    except NoKey:
        print(no_key_message(args.key_dir), file=sys.stderr)
        return 2
    claims = access_token_claims(args.scope, args.sub, args.ttl, args.issuer, args.audience, extra)
    print(keys.mint(claims))
    made = "a NEW key" if created else "key"
    print(f"signed with {made} kid {keys.kid} from {keys.folder.resolve()}/ (iss {claims.get('iss')}, "
          f"aud {claims.get('aud')})", file=sys.stderr)
    return 0


def _devcerts(args: argparse.Namespace) -> int:
    from gateway.tools.devcerts import make_devcerts

    written = make_devcerts(args.dir)
    print(f"DEVELOPMENT CERTIFICATES in {args.dir}/ (anyone who can read it can impersonate the gateway or "
          f"the client): {', '.join(p.name for p in written)}", file=sys.stderr)
    print(f"  serve:  --tls-cert {written[1]} --tls-key {written[2]}")
    print(f"  client: curl --cacert {written[0]} --cert {written[3]} --key {written[4]} https://localhost:8080/")
    return 0


def _client_key(path: str):
    from gateway.tools.dpop_proof import ClientKey

    try:
        return ClientKey.load(path)
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"cannot read the DPoP key {path!r}: {exc}; make one with "
                         "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.pem")


def _dpop_proof(args: argparse.Namespace) -> int:
    print(_client_key(args.key).proof(args.method, args.url, args.token, args.nonce))
    return 0


def _devissuer(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.config.loader import parse_listen
    from gateway.tools.dev_keys import BadClients, DevKeys
    from gateway.tools.devissuer import issuer_app

    host, port = parse_listen(args.listen)
    keys = DevKeys.load_or_create(args.key_dir)
    try:
        keys.clients()
    except BadClients as exc:
        print(exc, file=sys.stderr)
        return 2
    issuer = args.issuer or f"http://{args.listen}/"
    print(f"DEVELOPMENT ISSUER on http://{args.listen}/ (issuer {issuer}): for local use only; "
          f"its keys in {args.key_dir}/ let anyone mint tokens; clients in {args.key_dir}/clients.json",
          file=sys.stderr, flush=True)
    web.run_app(issuer_app(keys, issuer, args.audience), host=host, port=port, print=None)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    from gateway.tools.dev_keys import DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_DIR
    from gateway.tools.devcerts import DEFAULT_DIR as DEFAULT_CERT_DIR

    parser = argparse.ArgumentParser(prog="gateway", description="JWT auth gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    check = commands.add_parser("check", help="validate and lint a routes.yaml, print the effective rules")
    for sub in (serve, check):
        sub.add_argument("--config", required=True, help="path to routes.yaml")
        sub.add_argument("--listen", help="HOST:PORT to listen on (env GATEWAY_LISTEN)")
        sub.add_argument("--upstream", help="upstream URL (env GATEWAY_UPSTREAM)")
        sub.add_argument("--admin", help="HOST:PORT of the admin listener (env GATEWAY_ADMIN; default 127.0.0.1:9901)")
        sub.add_argument("--tls-cert", help="PEM certificate chain: serve https (env GATEWAY_TLS_CERT; with --tls-key)")
        sub.add_argument("--tls-key", help="PEM private key of --tls-cert (env GATEWAY_TLS_KEY)")
    serve.add_argument("--workers", type=_positive, default=int(os.environ.get("GATEWAY_WORKERS", "1")),
                       help="processes sharing the port through SO_REUSEPORT (env GATEWAY_WORKERS; default 1)")
    serve.add_argument("--log-format", choices=("auto", "json", "text"),
                       default=os.environ.get("GATEWAY_LOG_FORMAT", "auto"),
                       help="auto: text on a terminal, JSON otherwise (env GATEWAY_LOG_FORMAT)")
    serve.set_defaults(run=_serve)
    check.add_argument("--offline", action="store_true", help="do not fetch the providers' keys")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.set_defaults(run=_check)

    explain = commands.add_parser("explain", help="which route and rule decide a request, and the answer")
    explain.add_argument("--config", required=True, help="path to routes.yaml")
    explain.add_argument("method", help="HTTP method, e.g. GET")
    explain.add_argument("path", help="request path, with its query if any, e.g. /admin")
    given = explain.add_mutually_exclusive_group()
    given.add_argument("--token", help="a JWT, verified for real (the providers' keys are fetched)")
    given.add_argument("--claims", help="a token payload as JSON, taken as already verified")
    explain.set_defaults(run=_explain)

    test = commands.add_parser("test", help="run a YAML table of expected decisions against the rules")
    test.add_argument("--config", required=True, help="path to routes.yaml")
    test.add_argument("tests", help="the cases, e.g. config/routes.test.yaml")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(run=_test)

    token = commands.add_parser("token", help="print a token signed by the development issuer's key")
    token.add_argument("--scope", help='space-separated scopes, e.g. "read:user read:admin" (default: no scope claim)')
    token.add_argument("--sub", default="dev-user", help="subject (default dev-user)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--claim", action="append", default=[], metavar="NAME=VALUE",
                       help="an extra claim, repeatable; NAME as it appears in the token (no brackets, "
                            "even for a URL); VALUE is read as JSON when it parses, else as a string")
    token.add_argument("--claims", help="extra claims as one JSON object; --claim NAME=VALUE items win over it")
    token.add_argument("--issuer", default=os.environ.get("AUTH_ISSUER") or DEFAULT_ISSUER,
                       help=f"iss (default $AUTH_ISSUER, as config/routes.yaml reads it, else {DEFAULT_ISSUER})")
    token.add_argument("--audience", default=os.environ.get("AUTH_AUDIENCE") or DEFAULT_AUDIENCE,
                       help=f"aud (default $AUTH_AUDIENCE, else {DEFAULT_AUDIENCE})")
    token.add_argument("--key-dir", default=DEFAULT_KEY_DIR, help=f"the signing key's folder (default {DEFAULT_KEY_DIR})")
    token.add_argument("--new-key", action="store_true",
                       help="create a signing key in --key-dir if it has none (a gateway trusting another key "
                            "refuses its tokens)")
    token.add_argument("--cert-bound", metavar="CERT_PEM",
                       help="bind the token to this client certificate (cnf x5t#S256, RFC 8705)")
    token.add_argument("--dpop-key", metavar="KEY.pem",
                       help="bind the token to this client key (cnf.jkt): it is then accepted only with DPoP proofs")
    token.set_defaults(run=_token)

    certs = commands.add_parser("devcerts", help="make a local CA, a localhost server and a client certificate")
    certs.add_argument("--dir", default=DEFAULT_CERT_DIR, help=f"where to write them (default {DEFAULT_CERT_DIR})")
    certs.set_defaults(run=_devcerts)

    proof = commands.add_parser("dpop-proof", help="print a DPoP proof for one request (curl -H \"DPoP: ...\")")
    proof.add_argument("--key", required=True, metavar="KEY.pem", help="the client's EC P-256 or RSA private key")
    proof.add_argument("method", help="HTTP method, e.g. GET")
    proof.add_argument("url", help="the URL as the client sends it, e.g. http://127.0.0.1:8080/user")
    proof.add_argument("--token", help="the access token the proof goes with (its hash becomes ath)")
    proof.add_argument("--nonce", help="a nonce the gateway sent in DPoP-Nonce")
    proof.set_defaults(run=_dpop_proof)

    issuer = commands.add_parser("devissuer", help="run the local development issuer")
    issuer.add_argument("--listen", default="127.0.0.1:9000")
    issuer.add_argument("--issuer", help="issuer URL (default http://LISTEN/)")
    issuer.add_argument("--audience", default=DEFAULT_AUDIENCE)
    issuer.add_argument("--key-dir", default=DEFAULT_KEY_DIR)
    issuer.set_defaults(run=_devissuer)

    args = parser.parse_args(argv)
    access_log.configure(getattr(args, "log_format", "text"), os.environ.get("GATEWAY_LOG_LEVEL", "INFO"))
    return args.run(args)
