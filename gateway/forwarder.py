"""Forwarder: sends an allowed request upstream over pooled keep-alive connections and streams the answer back.

The upstream URL is built with `encoded=True` from the canonical path, so the
bytes the route table judged are exactly the bytes the upstream routes on.
"""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from . import errors
from .config import UpstreamConfig
from .headers import downstream_response_headers

SMALL_BODY = 256 * 1024


class Forwarder:
    def __init__(self, config: UpstreamConfig):
        self.config = config
        self.base = "http://localhost" if config.url.startswith("unix:") else config.url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.config.url.startswith("unix:"):
            connector = aiohttp.UnixConnector(path=self.config.url[5:], limit=self.config.pool_size,
                                              keepalive_timeout=self.config.keepalive)
        else:
            connector = aiohttp.TCPConnector(limit=self.config.pool_size, keepalive_timeout=self.config.keepalive,
                                             ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                          sock_read=self.config.read_timeout),
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def forward(self, request: web.BaseRequest, path: str, query: str,
                      headers: CIMultiDict, extra_headers: dict[str, str] | None = None) -> web.StreamResponse:
        url = URL(self.base + path + ("?" + query if query else ""), encoded=True)
        data = request.content if request.body_exists else None
        response: web.StreamResponse | None = None
        try:
            async with self.session.request(request.method, url, headers=headers, data=data,
                                            allow_redirects=False) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                              headers=downstream_response_headers(upstream.headers))
                if extra_headers:
                    response.headers.update(extra_headers)
                length = upstream.content_length
                if length is not None and length <= SMALL_BODY:
                    body = await upstream.read()
                    await response.prepare(request)
                    await response.write_eof(body)
                    return response
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            if response is not None and response.prepared:
                raise
            raise errors.upstream_timeout() from None
        except aiohttp.ClientError:
            if response is not None and response.prepared:
                raise
            raise errors.upstream_unavailable() from None
