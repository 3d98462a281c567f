"""Talking HTTP: header hygiene, X-Forwarded, request bodies, the upstream pool, WebSocket relay, client protocol errors."""
