"""`python -m gateway check`: the report an operator reads before (and instead of) a restart.

Load errors and lint errors were already printed by the caller; this prints
the lint warnings, each provider's reachability, and the effective rules in
the order the gateway applies them.
"""
from __future__ import annotations

from gateway.config.model import GatewayConfig
from gateway.pipeline.route_overlap import overlaps
from gateway.tools.probe import fetched_caches, reachability

TOKEN = {"none": "public", "optional": "optional", "required": "required"}


async def provider_report(config: GatewayConfig) -> tuple[list[str], list[str], list[str]]:
    async with fetched_caches(config.providers) as caches:
        return reachability(caches, config.source)


def _notes(config: GatewayConfig) -> dict[int, str]:
    """Per route index: the methods earlier routes answer first."""
    routes = config.routes.routes
    notes: dict[int, list[str]] = {}
    for overlap in overlaps(routes):
        if overlap.taken:
            notes.setdefault(routes.index(overlap.route), []).append(
                f"{','.join(sorted(overlap.taken))} taken by line {overlap.earlier.line}")
    return {index: "; ".join(items) for index, items in notes.items()}


def rules_table(config: GatewayConfig) -> list[str]:
    """One row per route, first match first, and the fail-closed default last."""
    every = {p.name for p in config.providers}
    rows = [("LINE", "METHODS", "PATH", "TOKEN", "RULE", "PROVIDERS", "NOTES")]
    notes = _notes(config)
    for index, route in enumerate(config.routes.routes):
        methods = ",".join(sorted(route.methods)) if route.methods else "*"
        providers = sorted(every if route.providers is None else route.providers & every)
        need = route.access.token.value
        rows.append((str(route.line), methods, route.pattern, TOKEN[need], route.access.describe(),
                     "-" if need == "none" else ",".join(providers) or "(none)", notes.get(index, "")))
    rows.append(("-", "*", "(anything else)", "-", "404 not_found, never forwarded", "-", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
