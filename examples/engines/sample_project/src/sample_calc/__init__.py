"""A tiny calculator: what the example engines build into a wheel and run tests on."""

from __future__ import annotations

__all__ = ["mean", "slugify"]


def mean(values: list[float]) -> float:
    """The arithmetic mean of `values`.

    Raises:
        ValueError: `values` is empty.
    """
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def slugify(title: str) -> str:
    """`title` in lower case, words joined by hyphens: `Hello, World!` becomes `hello-world`."""
    words = "".join(c if c.isalnum() else " " for c in title.lower()).split()
    return "-".join(words)
