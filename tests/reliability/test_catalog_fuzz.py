"""Catalog fuzzing: any mutation of a valid catalog either loads or fails with ``CatalogError``
whose every problem names the file (and, for a field, its YAML path); never another exception.
The hand-written cases (tiers out of order, a tier after the unbounded one, negative rates,
unknown currency, unknown fields, invalid YAML, overlaps) are in tests/unit/test_catalog_contract.py;
here they are also checked to name the field they are about. A bad catalog stopping a billing
run before anything is issued is ``test_resources.py::test_a_bad_catalog_stops_billing_and_keeps_the_ledger``.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from contracts.catalog import Catalog, CatalogError, load_catalog, overlapping_subscriptions
from tests.reliability.fuzz import budget
from tests.reliability.harness import hostile_catalog

BASE = hostile_catalog()
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True), st.text(max_size=30),
    st.just("-1"), st.just("1e400"), st.just("XXX"), st.just("../../etc"), st.just([]), st.just({}),
    st.just({"unexpected": 1}), st.just("2026-10-01T00:00:00"), st.just(None),
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [path for path in paths(BASE) if path]


@st.composite
def mutated(draw) -> tuple[str, tuple]:
    document = copy.deepcopy(BASE)
    path = draw(st.sampled_from(ALL_PATHS))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["set", "set", "delete", "unknown_field"]))
    if action == "set":
        parent[path[-1]] = draw(VALUES)
    elif action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))] = draw(VALUES)
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    if draw(st.integers(0, 9)) == 0:  # now and then, broken YAML
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from([":\n  - [", "\t", "{{", "'", ": : :"])) + text[cut:]
    return text, path


@budget(60)
@given(case=mutated())
def test_a_mutated_catalog_loads_or_fails_naming_file_and_field(case: tuple[str, tuple]) -> None:
    text, _ = case
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "prices.yaml").write_text(text, encoding="utf-8")
        try:
            catalog = load_catalog(Path(folder))
        except CatalogError as error:
            assert error.problems
            for problem in error.problems:
                assert problem.startswith("prices.yaml"), problem
                assert ": " in problem and len(problem) < 2000
            return
    assert isinstance(catalog, Catalog)
    overlapping_subscriptions(catalog)  # never raises either


@pytest.mark.parametrize("mutate,field", [
    (lambda c: c["products"][0]["metrics"][0]["tiers"].reverse(), "products[0].metrics[0]"),
    (lambda c: c["products"][0]["metrics"][0]["tiers"].append({"name": "after", "up_to": None}),
     "products[0].metrics[0]"),
    (lambda c: c["products"][1]["metrics"][1]["tiers"][0].update(unit_rate="-1.25"),
     "products[1].metrics[1].tiers[0].unit_rate"),
    (lambda c: c["products"][0].update(currency="XBT"), "products[0].currency"),
    (lambda c: c["products"][0].update(colour="red"), "products[0].colour"),
    (lambda c: c["subscriptions"][0].update(start="2026-09-01T00:00:00"), "subscriptions[0].start"),
    (lambda c: c["subscribers"][0].update(email="not an email"), "subscribers[0].email"),
])
def test_each_bad_field_is_named(tmp_path: Path, mutate, field: str) -> None:
    document = copy.deepcopy(BASE)
    mutate(document)
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as error:
        load_catalog(tmp_path)
    assert any(problem.startswith(f"prices.yaml: {field}") for problem in error.value.problems), error.value.problems
