"""Replay stores for DPoP proofs: each proof's `jti` is accepted once within the window its `iat` allows.

`memory` serves one process: a bounded set of keys, each forgotten once a proof
carrying it would be refused as too old anyway.  `redis://` is shared by every
replica: one atomic `SET key 1 NX PX ttl` per proof, so a proof used at one
replica is refused at all the others.  Either way a proof that cannot be
checked is refused: a full memory store or an unreachable Redis answer 503
`replay_store_unavailable`, never a pass.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from gateway import errors

log = logging.getLogger("gateway.dpop")

REDIS_TIMEOUT = 1.0  # seconds for a connect or an answer: a slow Redis must not hold requests for long
REDIS_PREFIX = b"gateway:dpop:jti:"


class ReplayStore(Protocol):
    async def first_use(self, key: bytes, ttl: float) -> bool:
        """True the first time `key` is offered within `ttl` seconds, False for a replay."""

    async def close(self) -> None: ...


class MemoryReplayStore:
    """Keys in arrival order with their expiry; expired ones leave from the front as new ones come."""

    def __init__(self, max_entries: int, clock=time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self.entries: dict[bytes, float] = {}

    async def first_use(self, key: bytes, ttl: float) -> bool:
        now = self.clock()
        entries = self.entries
        expiry = entries.get(key)
        if expiry is not None and expiry > now:
            return False
        self._expire_front(now)
        if len(entries) >= self.max_entries:
            self.entries = entries = {k: e for k, e in entries.items() if e > now}  # expiries vary: sweep all
            if len(entries) >= self.max_entries:
                log.warning("DPoP replay store full (%d proofs within their window); refusing proofs: "
                            "raise dpop.replay_entries or use a redis:// store", self.max_entries)
                raise errors.replay_store_unavailable(
                    "the DPoP replay store is full; try again shortly (operators: raise dpop.replay_entries)")
        entries.pop(key, None)  # an expired copy goes, so the new one is at the end
        entries[key] = now + ttl
        return True

    def _expire_front(self, now: float) -> None:
        entries = self.entries
        for _ in range(8):  # a few per call keep it bounded; arrival order is roughly expiry order
            first = next(iter(entries), None)
            if first is None or entries[first] > now:
                return
            del entries[first]

    async def close(self) -> None:
        self.entries.clear()


class RedisReplayStore:
    """`SET NX PX` per proof in a Redis every replica shares; the checks of one event-loop turn share a round trip.

    Requests whose proofs reach the store in the same loop turn go out as one pipeline (still one
    atomic SET each), so under load the syscalls and wake-ups of a round trip are paid once per batch.
    """

    def __init__(self, url: str):
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        # no retries: one attempt within REDIS_TIMEOUT, then the request is refused (fail closed, fast)
        self.client = Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
                                     retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self._pending: list[tuple[bytes, int, asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()

    async def first_use(self, key: bytes, ttl: float) -> bool:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((REDIS_PREFIX + key.hex().encode(), max(1, int(ttl * 1000)), future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after the other requests ready in this turn have added theirs
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[bytes, int, asyncio.Future]]) -> None:
        from redis.exceptions import RedisError

        try:  # bounded by the client's own connect and socket timeouts
            if len(batch) == 1:
                key, px, _ = batch[0]
                results = [await self.client.set(key, b"1", nx=True, px=px)]
            else:
                pipe = self.client.pipeline(transaction=False)
                for key, px, _ in batch:
                    pipe.set(key, b"1", nx=True, px=px)
                results = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("DPoP replay store %s unreachable (%s): refusing DPoP requests until it answers",
                        _safe_url(self.url), type(exc).__name__)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(errors.replay_store_unavailable(
                        "the DPoP replay store cannot be reached, so the proof cannot be checked; try again shortly"))
            return
        for (_, _, future), stored in zip(batch, results):
            if not future.done():  # a request whose client went away was cancelled meanwhile
                future.set_result(bool(stored))

    async def close(self) -> None:
        await self.client.aclose()


def _safe_url(url: str) -> str:
    """The store's URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def open_replay_store(url: str, max_entries: int) -> ReplayStore:
    return MemoryReplayStore(max_entries) if url == "memory" else RedisReplayStore(url)
