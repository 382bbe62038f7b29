"""The fast YAML path gives what PyYAML's safe loader gives: the same data and errors, for every kind of document."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from aperture.execution.capabilities._fastyaml import load_yaml

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # what capability files were read with before

DOCUMENTS = {
    "plain-capability": "name: a\nproviders:\n  primary:\n    config: {endpoint: 'https://x', method: GET}\n",
    "scalars": "i: 1\nhex: 0x1F\noct: 0o17\nsep: 1_000\nsexa: 190:20:30\nf: 2.5\nexp: 0.5e3\ninf: -.inf\n"
    "yes: yes\nOff: Off\nnull: ~\nempty:\nquoted: '123'\ndq: \"yes\"\n",
    "dates-and-binary": "t: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\nbin: !!binary aGVsbG8=\n",
    "explicit-tags": "s: !!str 12\ni: !!int '7'\nf: !!float '1'\n",
    "shared-alias": "a: &x [1, {b: 2}]\nc: *x\n",
    "merge-keys": "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\nmany:\n  <<: [*b, {z: 4}]\n",
    "set-omap-pairs": "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}, {a: 2}]\n",
    "value-key": "= : v\n",
    "duplicate-keys": "k: 1\nk: 2\n",
    "empty": "",
    "comment-only": "# nothing\n",
    "top-level-list": "- 1\n- two\n",
    "deep-nesting": "n: " + "[" * 600 + "]" * 600 + "\n",
    "unhashable-key": "? [1, 2]\n: v\n",
    "unknown-tag": "a: !custom 1\n",
    "merge-of-a-scalar": "a:\n  <<: 1\n",
    "two-documents": "--- a\n--- b\n",
    "malformed": "a: [1,\n",
}


def outcome(load: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", load(text)
    except yaml.YAMLError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("text", list(DOCUMENTS.values()), ids=list(DOCUMENTS))
def test_the_fast_loader_gives_what_the_safe_loader_gives(text: str) -> None:
    assert outcome(lambda t: load_yaml(t)[0], text) == outcome(lambda t: yaml.load(t, Loader=SAFE_LOADER), text)


def test_not_a_number_stays_not_a_number() -> None:
    data, _ = load_yaml("n: .NaN\nm: -.inf\n")
    assert math.isnan(data["n"]) and data["m"] == -math.inf


def test_an_alias_is_the_same_object_and_a_recursive_one_refers_to_itself() -> None:
    data, _ = load_yaml("a: &x {k: 1}\nb: *x\nr: &r [*r]\n")
    assert data["a"] is data["b"]
    assert data["r"][0] is data["r"]


def test_the_node_tree_is_kept_for_line_numbers() -> None:
    data, root = load_yaml("name: a\n\nproviders: {}\n")
    assert data == {"name": "a", "providers": {}}
    assert isinstance(root, yaml.MappingNode)
    assert [key.start_mark.line + 1 for key, _ in root.value] == [1, 3]
    assert load_yaml("# empty\n") == (None, None)
