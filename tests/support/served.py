"""The context-manager side of a test server: `async with Server() as server` starts it and always stops it."""
from __future__ import annotations


class Served:
    """For a class with `async start() -> self` and `async stop()`."""

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()
