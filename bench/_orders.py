"""The code-mode benchmark's own tools (a `python` backend, module `_orders`): a large result of 1,000 order
records, and an async echo for the bridged-call overhead."""

from __future__ import annotations

import random

from pydantic import BaseModel

from aperture import tool

REGIONS = ("emea", "amer", "apac")
STATUSES = ("shipped", "pending", "cancelled")


class Order(BaseModel):
    id: str
    customer: str
    region: str
    status: str
    amount: float


@tool(tags=["orders", "data", "sales"], read_only=True, idempotent=True)
def list_orders() -> list[Order]:
    """List every order of the quarter: id, customer, region, status and amount (1,000 records)."""
    rng = random.Random(20)
    return [
        Order(
            id=f"ord-{n:05d}",
            customer=f"customer-{rng.randrange(300):03d}",
            region=rng.choice(REGIONS),
            status=rng.choice(STATUSES),
            amount=round(rng.uniform(5, 500), 2),
        )
        for n in range(1000)
    ]


@tool(read_only=True)
async def echo(text: str) -> str:
    """Echo the text."""
    return text


@tool(tags=["orders", "data"], read_only=True, idempotent=True)
def order_amounts(orders: list[Order], status: str | None = None) -> list[float]:
    """The amounts of the given orders, optionally only those with a status (shipped, pending, cancelled).

    Args:
        orders: Order records as list_orders returns them.
        status: Keep only orders with this status.
    """
    return [order.amount for order in orders if status is None or order.status == status]
