"""A no-op Python tool: the baseline a backend's call through the gateway is compared with (bench.grpc)."""

from __future__ import annotations

from aperture import tool


@tool
async def noop(sku: str) -> dict[str, str]:
    """Return the argument unchanged (does no work: what is left is the gateway's own cost)."""
    return {"sku": sku}
