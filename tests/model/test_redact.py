"""The redactor: every form of a configured secret becomes `[redacted]`, in text, data, errors and log records."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest

from aperture.model import ExecutionError, Redactor, install_log_redaction
from aperture.model.redact import REDACTED, secret_forms

SECRET = "s3cr3t/t0ken+with space&more"

FORMS = {
    "plain": SECRET,
    "url-encoded": quote(SECRET, safe=""),
    "url-encoded-lower-hex": quote(SECRET, safe="").lower(),
    "url-path-encoded": quote(SECRET),
    "form-encoded": quote_plus(SECRET),
    "json-escaped": json.dumps(SECRET)[1:-1],
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64-unpadded": base64.b64encode(SECRET.encode()).decode().rstrip("="),
    "base64-urlsafe": base64.urlsafe_b64encode(SECRET.encode()).decode(),
}


@pytest.mark.parametrize("form", list(FORMS.values()), ids=list(FORMS))
def test_each_common_encoding_of_a_secret_is_redacted(form: str) -> None:
    cleaned = Redactor([SECRET]).text(f"before {form} after")
    assert cleaned == f"before {REDACTED} after"


@pytest.mark.parametrize("prefix", ["u:", "us:", "use:", "user:"], ids=lambda p: f"{len(p)}-byte-user")
def test_a_secret_inside_a_longer_base64_value_is_redacted_at_every_alignment(prefix: str) -> None:
    header = "Basic " + base64.b64encode(f"{prefix}{SECRET}".encode()).decode()
    cleaned = Redactor([SECRET]).text(header)
    assert REDACTED in cleaned
    assert base64.b64encode(f"{prefix}{SECRET}".encode()).decode() not in cleaned


def test_a_user_password_value_is_redacted_in_its_basic_auth_form() -> None:
    value = "svc-user:pa55word-value"
    basic = base64.b64encode(value.encode()).decode()
    assert Redactor([value]).text(f"Authorization: Basic {basic}") == f"Authorization: Basic {REDACTED}"


def test_short_values_are_not_secrets_and_nothing_is_done_without_secrets() -> None:
    redactor = Redactor(["eu", "true", "1234567"])
    assert not redactor.active and redactor.text("eu true 1234567") == "eu true 1234567"
    data = {"a": ["eu"]}
    assert redactor.data(data) is data
    assert all(len(form) >= 8 for form in secret_forms("12345678"))


def test_data_is_redacted_in_keys_and_values_and_untouched_parts_stay_the_same_objects() -> None:
    redactor = Redactor([SECRET])
    clean = {"x": [1, 2]}
    data = {"token": SECRET, "nested": [{"k": f"Bearer {SECRET}"}, 3, None], SECRET: True, "clean": clean}
    out = redactor.data(data)
    assert out == {
        "token": REDACTED,
        "nested": [{"k": f"Bearer {REDACTED}"}, 3, None],
        REDACTED: True,
        "clean": clean,
    }
    assert out["clean"] is clean and redactor.data(clean) is clean


def test_an_errors_message_and_details_are_redacted() -> None:
    error = ExecutionError(f"the API said: bad key {SECRET}", details={"api_message": f"bad key {SECRET}"})
    Redactor([SECRET]).error(error)
    assert error.message == f"the API said: bad key {REDACTED}" and str(error) == error.message
    assert error.details == {"api_message": f"bad key {REDACTED}"}


def test_secrets_added_later_are_redacted_too() -> None:
    redactor = Redactor()
    assert not redactor.add(["short"])
    assert redactor.add(["later-added-secret"]) and not redactor.add(["later-added-secret"])
    assert redactor.text("x later-added-secret") == f"x {REDACTED}"


def test_log_records_of_every_logger_in_the_tree_are_redacted_until_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aperture")
    child = logging.getLogger("aperture.model.tests_redact_child")
    remove = install_log_redaction(Redactor([SECRET]), trees=("aperture",))
    try:
        child.info("token %s sent", SECRET)
        child.warning("%(who)s used %(key)s", {"who": "a", "key": quote(SECRET, safe="")})
        logging.getLogger("aperture").error(f"careless {SECRET}")
        try:
            raise ValueError(f"refused {SECRET}")
        except ValueError:
            child.exception("call failed")
    finally:
        remove()
    child.info("after %s", SECRET)  # the filter is gone
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [f"token {REDACTED} sent", f"a used {REDACTED}", f"careless {REDACTED}"]
    assert caplog.records[3].exc_text is not None and f"refused {REDACTED}" in caplog.records[3].exc_text
    assert SECRET not in caplog.text.split("after")[0]
    assert messages[-1] == f"after {SECRET}"
