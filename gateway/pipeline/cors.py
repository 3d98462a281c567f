"""CORS: preflights are answered from configuration, never sent through auth.

Browsers send `OPTIONS` preflights without credentials, so a protected route
with CORS enabled must answer them itself; actual responses (including the
gateway's own 401/403) carry the allow headers so browser code can read them.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway import errors


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: frozenset[str]  # exact origins, or {"*"}
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    allow_credentials: bool
    max_age: int

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) response; empty for foreign origins."""
        if origin is None or not self.origin_allowed(origin):
            return {}
        headers = {"Access-Control-Allow-Origin": origin if self.allow_credentials or "*" not in self.allow_origins
                   else "*", "Vary": "Origin"}
        if self.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if self.expose_headers:
            headers["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        return headers

    def preflight(self, origin: str, method: str, request_headers: str | None) -> web.Response:
        """204 with the allow headers, or 403 when origin, method or headers are not allowed."""
        wanted = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
        allowed_headers = {h.lower() for h in self.allow_headers}
        if (not self.origin_allowed(origin) or method not in self.allow_methods
                or ("*" not in allowed_headers and not set(wanted) <= allowed_headers)):
            return web.json_response({"code": "cors_preflight_refused",
                                      "description": "origin, method or headers are not allowed by this route's CORS policy"},
                                     status=403, headers={"Vary": "Origin", "Server": errors.SERVER})
        headers = self.response_headers(origin)
        headers["Access-Control-Allow-Methods"] = ", ".join(self.allow_methods)
        if wanted:
            headers["Access-Control-Allow-Headers"] = ", ".join(wanted)
        headers["Access-Control-Max-Age"] = str(self.max_age)
        headers["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        headers["Server"] = errors.SERVER
        return web.Response(status=204, headers=headers)
