"""namespace_text: what a backend says about itself, as one bounded line."""

from __future__ import annotations

import pytest

from aperture.model import namespace_text


def test_parts_become_sentences_and_one_already_said_is_left_out() -> None:
    assert namespace_text("Acme Ledger", None, "", "Invoices and refunds.") == "Acme Ledger. Invoices and refunds."
    assert namespace_text("Billing:", "Invoices\n\n  and   refunds") == "Billing: Invoices and refunds"
    assert namespace_text("acme", "Acme billing for ACME customers.") == "acme. Acme billing for ACME customers."
    assert namespace_text("Acme billing", "Acme billing for customers.") == (
        "Acme billing. Acme billing for customers."
    )
    assert namespace_text("Acme billing for customers.", "acme BILLING") == "Acme billing for customers."


@pytest.mark.parametrize("limit", [20, 37, 500], ids=["short", "mid-word", "long"])
def test_long_text_is_cut_at_a_word_and_cutting_again_changes_nothing(limit: int) -> None:
    text = namespace_text("word " * 200, limit=limit)
    assert len(text) <= limit and text.endswith("word…")
    assert namespace_text(text, limit=limit) == text


def test_no_limit_keeps_everything() -> None:
    assert len(namespace_text("x " * 5000, limit=None)) == 9999
