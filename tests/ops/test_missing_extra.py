"""An ops piece enabled on an install without the `ops` extra (what `make demo` installs): one sentence."""

from __future__ import annotations

import sys

import pytest

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.model import ConfigError


@pytest.mark.parametrize(
    ("ops", "missing", "module"),
    [
        ({"observe": {"enabled": True}}, "opentelemetry", "aperture.ops.observe"),
        ({"cache": {"enabled": True, "store": "redis"}, "redis": {"url": "redis://127.0.0.1:6379/0"}}, "redis", None),
    ],
    ids=["observe", "redis"],
)
def test_an_enabled_piece_without_its_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, ops: dict[str, object], missing: str, module: str | None
) -> None:
    # None in sys.modules makes `import` fail as it does when the package is not installed; its submodules too,
    # since an import finds a submodule imported earlier without looking at its parent.
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")] or [missing]:
        monkeypatch.setitem(sys.modules, name, None)
    if module is not None:  # imported by an earlier test: import it afresh, so it meets the missing library
        monkeypatch.delitem(sys.modules, module, raising=False)
    config = parse_config({"ops": ops})
    with pytest.raises(ConfigError) as caught:
        Gateway(config)
    assert "need the 'ops' extra" in caught.value.message
    assert "pip install -e '.[ops]'" in caught.value.message
