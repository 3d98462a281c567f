"""JWKS cache: one provider's signing keys, fetched off the request path and kept fresh.

Keys are parsed once into python-jose key objects per (kid, algorithm), so a
request only does a dict lookup.  Refreshes run in the background before the
`Cache-Control: max-age` runs out; an unknown `kid` triggers one extra
refresh at its first use, shared by every waiting request.  The cooldown
counts only from unknown-kid and failed refreshes (never from the start-up or
background fetches, or a key published just after one would be refused for a
whole cooldown), so a flood of made-up kids still costs O(1) fetches.  A
failed refresh keeps the last good keys and retries with backoff.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from jose import jwk

from gateway.config.model import ProviderConfig

log = logging.getLogger("gateway.jwks")

_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)")
MIN_RSA_BITS = 2048
_DUPLICATE_KID = "kid appears more than once; every copy is ignored"


class FetchError(Exception):
    """A JWKS or discovery fetch that did not give usable keys; the message says why."""


class IssuerMismatch(FetchError):
    """The discovery document names another issuer: a config mistake, not a transient failure."""


def issuer_difference(configured: str, named: object) -> str:
    """The fix for a configured issuer that is not the one a provider names (its tokens' iss)."""
    if isinstance(named, str) and configured.rstrip("/") == named.rstrip("/"):
        return f"the trailing slash is the difference: write issuer: {named}"
    return f"write issuer: {named} if that is the provider you mean (it must equal the tokens' iss exactly)"


@dataclass
class JwksStats:
    fetches: int = 0
    failures: int = 0
    unknown_kid_refreshes: int = 0
    skipped_keys: int = 0
    last_success: float | None = None
    last_error: str | None = None
    key_count: int = 0
    misconfigured: str | None = None  # set by an IssuerMismatch: retrying cannot help


def key_fits(jwk_dict: dict, algorithm: str) -> bool:
    kty = jwk_dict.get("kty")
    if algorithm.startswith("RS"):
        return kty == "RSA"
    if algorithm.startswith("ES"):
        return kty == "EC" and jwk_dict.get("crv") == _CURVES[algorithm]
    return False


_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}


def construct_key(item: dict, algorithms: list[str], label: str) -> tuple[dict, str | None]:
    members = _MEMBERS.get(item.get("kty"), ())
    if not all(isinstance(item.get(name), str) and len(item[name]) <= 2048 for name in members):
        return {}, f"{label}: {', '.join(members)} must be base64url strings of sane length"
    built = {}
    for algorithm in algorithms:
        try:
            key = jwk.construct(item, algorithm)
        except Exception as exc:  # python-jose raises many types on malformed keys; none may stop the others
            return {}, f"{label}: cannot be loaded for {algorithm}: {exc.__class__.__name__}"
        size = getattr(getattr(key, "prepared_key", None), "key_size", None)
        if item.get("kty") == "RSA" and (size is None or size < MIN_RSA_BITS):
            return {}, f"{label}: RSA key of {size} bits is below {MIN_RSA_BITS}"
        built[algorithm] = key
    return built, None


def build_keys(document: object, algorithms: tuple[str, ...], reuse: dict[str, dict] | None = None):
    """Parse a JWKS into ({kid: {alg: key}}, skipped reasons, {canonical JSON: {alg: key}}).

    Unsupported, private, weak or malformed keys are skipped, never fatal.
    `reuse` maps a key's canonical JSON to previously built objects so an
    unchanged key keeps its identity across refreshes (cached tokens stay valid).
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("the JWKS is not a JSON object with a 'keys' list")
    keys: dict[object, dict[str, object]] = {}
    by_canonical: dict[str, dict] = {}
    duplicated: set = set()
    skipped: list[str] = []
    # counted over every entry, usable or not: a copy skipped for another reason still makes the kid ambiguous
    kid_copies = Counter(item["kid"] for item in document["keys"]
                         if isinstance(item, dict) and isinstance(item.get("kid"), str))
    for index, item in enumerate(document["keys"]):
        label = f"key #{index}"
        if not isinstance(item, dict):
            skipped.append(f"{label}: not a JSON object")
            continue
        kid = item.get("kid")
        if kid is not None and not isinstance(kid, str):
            skipped.append(f"{label}: kid is not a string")
            continue
        label = f"key {kid!r}" if kid is not None else label
        if kid_copies[kid] > 1:
            skipped.append(f"{label}: {_DUPLICATE_KID}")
            continue
        if item.get("use", "sig") != "sig":
            skipped.append(f"{label}: use is {item.get('use')!r}, not 'sig'")
            continue
        if "key_ops" in item and "verify" not in (item["key_ops"] if isinstance(item["key_ops"], list) else ()):
            skipped.append(f"{label}: key_ops {item['key_ops']!r} does not include 'verify'")  # RFC 7517 §4.3
            continue
        if "d" in item or "k" in item:
            skipped.append(f"{label}: private or symmetric key material is never used from a JWKS")
            continue
        wanted = [a for a in algorithms if key_fits(item, a) and item.get("alg", a) == a]
        if not wanted:
            skipped.append(f"{label}: kty {item.get('kty')!r} / alg {item.get('alg')!r} fits none of {algorithms}")
            continue
        canonical = json.dumps(item, sort_keys=True)
        built = (reuse or {}).get(canonical)
        if built is None:
            built, problem = construct_key(item, wanted, label)
            if problem:
                skipped.append(problem)
                continue
        if kid in keys or kid in duplicated:  # keys without a kid: only one may be usable
            skipped.append(f"{label}: {_DUPLICATE_KID}")
            keys.pop(kid, None)
            duplicated.add(kid)
            continue
        keys[kid] = built
        by_canonical[canonical] = built
    return keys, skipped, by_canonical


def parse_max_age(cache_control: str | None) -> float | None:
    if not cache_control or "no-store" in cache_control or "no-cache" in cache_control:
        return None
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def discovery_urls(issuer: str) -> list[str]:
    """OIDC discovery, then RFC 8414's well-known location for the same issuer."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return [
        urlunsplit((parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", "")),
        urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")),
    ]


class JwksCache:
    def __init__(self, provider: ProviderConfig, session: aiohttp.ClientSession | None,
                 clock=time.monotonic):
        self.provider = provider
        self.policy = provider.jwks_policy
        self.session = session
        self.clock = clock
        self.stats = JwksStats()
        self.keys: dict[object, dict[str, object]] = {}
        self._by_canonical: dict[str, dict] = {}
        self.loaded = False
        self.in_service = True  # False while a reload only tries these keys out: no route depends on them yet
        self.jwks_uri = provider.jwks_uri
        self._refresh: asyncio.Task | None = None
        self._refresh_for_kid = False  # was the refresh under way started for an unknown kid?
        self._cooldown_from = float("-inf")  # the last unknown-kid or failed refresh
        self._runner: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        if self.provider.static_jwks is not None:
            self._install(self.provider.static_jwks, source="static configuration")
            return
        self._runner = asyncio.create_task(self._run(), name=f"jwks-{self.provider.name}")

    async def stop(self) -> None:
        for task in (self._runner, self._refresh):
            if task is not None:
                task.cancel()
        for task in (self._runner, self._refresh):
            if task is not None:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("provider %s: key refresher had failed", self.provider.name)

    async def wait_loaded(self, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while not self.loaded and self.clock() < deadline:
            await asyncio.sleep(0.02)
        return self.loaded

    async def _run(self) -> None:
        """Background loop: fetch, then sleep until shortly before max-age runs out."""
        delay = self.policy.retry_min
        while True:
            try:
                ttl = await self._shared_refresh()
                delay = self.policy.retry_min
                wait = ttl * 0.8
            except FetchError:
                wait = delay
                delay = min(delay * 2, self.policy.retry_max)
            await asyncio.sleep(wait)

    # -- request path ------------------------------------------------------
    def lookup(self, kid: object, algorithm: str):
        if kid is None:  # a token without kid is only accepted when the JWKS has exactly one key
            entry = next(iter(self.keys.values())) if len(self.keys) == 1 else None
        else:
            entry = self.keys.get(kid)
        return None if entry is None else entry.get(algorithm)

    def holds(self, kid: object, algorithm: str, key: object) -> bool:
        """Is this exact key object still published? False once a refresh dropped it."""
        return self.lookup(kid, algorithm) is key

    async def key_for(self, kid: object, algorithm: str):
        """The key for a token's kid and alg; an unknown kid may trigger one shared refresh."""
        key = self.lookup(kid, algorithm)
        if key is not None or kid in self.keys or self.provider.static_jwks is not None:
            return key
        if self._refresh is not None and not self._refresh_for_kid:
            # a background fetch under way may have left before the key was published: let it land, look again
            with contextlib.suppress(FetchError):
                await self._shared_refresh()
            if kid in self.keys:
                return self.lookup(kid, algorithm)
        if self._refresh is None:
            if self.clock() - self._cooldown_from < self.policy.cooldown:
                return None  # looked for unknown kids (or failed) moments ago: this kid is simply not published
            self.stats.unknown_kid_refreshes += 1
            self._cooldown_from = self.clock()
        try:
            await self._shared_refresh(for_unknown_kid=True)
        except FetchError:
            return None
        return self.lookup(kid, algorithm)

    # -- fetching ----------------------------------------------------------
    async def _shared_refresh(self, for_unknown_kid: bool = False) -> float:
        """Run one refresh, or join the one under way; returns the TTL to use."""
        if self._refresh is None:
            self._refresh_for_kid = for_unknown_kid
            self._refresh = asyncio.create_task(self._fetch_and_install())
            self._refresh.add_done_callback(self._refresh_done)
        return await asyncio.shield(self._refresh)

    def _refresh_done(self, task: asyncio.Task) -> None:
        self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved here so it is never reported as unhandled

    async def _fetch_and_install(self) -> float:
        self.stats.fetches += 1
        try:
            if self.jwks_uri is None:
                self.jwks_uri = await self._discover()
            document, max_age = await self._get_json(self.jwks_uri)
            self._install(document, source=self.jwks_uri)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, FetchError):  # a bug or an odd answer must not stop refreshing
                log.exception("provider %s: unexpected error while refreshing keys", self.provider.name)
                exc = FetchError(f"unexpected {exc.__class__.__name__} while refreshing keys")
            self.stats.failures += 1
            self._cooldown_from = self.clock()
            self.stats.last_error = str(exc)
            self.stats.misconfigured = str(exc) if isinstance(exc, IssuerMismatch) else None
            if self.loaded:
                kept = "keeping the last good keys"
            elif self.in_service:
                kept = "protected routes answer 503 until it works"
            else:
                kept = "the new rules are not applied without these keys"
            log.warning("provider %s: key refresh failed: %s; %s", self.provider.name, exc, kept)
            raise exc from None
        if max_age is None:
            return self.policy.default_ttl
        return min(max(max_age, self.policy.min_ttl), self.policy.max_ttl)

    def _install(self, document: object, source: str) -> None:
        keys, skipped, by_canonical = build_keys(document, self.provider.algorithms, self._by_canonical)
        for reason in skipped:
            log.info("provider %s: skipped %s", self.provider.name, reason)
        self.stats.skipped_keys = len(skipped)
        if not keys:
            raise FetchError(f"no usable signing key in the JWKS from {source}")
        self.keys = keys
        self._by_canonical = by_canonical
        self.loaded = True
        self.stats.key_count = len(keys)
        self.stats.last_success = time.time()
        self.stats.last_error = None

    async def _discover(self) -> str:
        problems = []
        for url in discovery_urls(self.provider.issuer):
            try:
                document, _ = await self._get_json(url)
            except FetchError as exc:
                problems.append(str(exc))
                continue
            if not isinstance(document, dict):
                problems.append(f"{url} is not a JSON object")
                continue
            if document.get("issuer") != self.provider.issuer:
                raise IssuerMismatch(
                    f"discovery document at {url} names issuer {document.get('issuer')!r}, not the configured "
                    f"{self.provider.issuer!r}; {issuer_difference(self.provider.issuer, document.get('issuer'))}"
                )
            uri = document.get("jwks_uri")
            try:
                scheme = urlsplit(uri).scheme if isinstance(uri, str) else None
            except ValueError:
                scheme = None
            if scheme not in ("http", "https"):
                raise FetchError(f"discovery document at {url} has no usable jwks_uri")
            if scheme == "http" and urlsplit(self.provider.issuer).scheme == "https":
                raise FetchError(f"discovery document at {url} points an https issuer at a plain-http jwks_uri")
            return uri
        raise FetchError("discovery failed: " + "; ".join(problems))

    async def _get_json(self, url: str) -> tuple[object, float | None]:
        if self.session is None:
            raise FetchError("no HTTP session to fetch keys with")
        limit = self.policy.max_bytes
        try:
            async with self.session.get(
                url, allow_redirects=False, headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            ) as response:
                if response.status != 200:
                    raise FetchError(f"{url} answered HTTP {response.status}")
                if (response.content_length or 0) > limit:
                    raise FetchError(f"{url} sent {response.content_length} bytes, over the {limit}-byte limit")
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"{url} sent more than the {limit}-byte limit")
                max_age = parse_max_age(response.headers.get("Cache-Control"))
        except asyncio.TimeoutError:
            raise FetchError(f"{url} did not answer within {self.policy.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"cannot reach {url}: {exc.__class__.__name__}: {exc}") from None
        try:
            return json.loads(body), max_age
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise FetchError(f"{url} did not send valid JSON") from None
