"""contracts.catalog: the catalog contract (SPEC §2): valid examples load; every invalid file is
rejected whole with errors naming the file, the YAML path and the field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from contracts.catalog import Catalog, CatalogError, load_catalog, overlapping_subscriptions
from contracts.events import MeteringEvent

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "data" / "examples" / "tutorial" / "catalog"

BASE: dict = {
    "products": [
        {
            "id": "docsum",
            "name": "DocSum",
            "currency": "USD",
            "recurring_charge": "199.00",
            "metrics": [
                {
                    "name": "Summaries",
                    "element": "requests",
                    "tiers": [
                        {"name": "First 1,000", "up_to": 1000, "unit_rate": "1.50"},
                        {"name": "1,000+", "up_to": None, "unit_rate": "1.35"},
                    ],
                }
            ],
        }
    ],
    "organizations": [{"id": "acme", "name": "Acme"}],
    "subscribers": [{"id": "acme-ap", "email": "ap@acme.example", "organization": "acme"}],
    "subscriptions": [
        {
            "id": "acme-docsum",
            "subscriber": "acme-ap",
            "product": "docsum",
            "start": "2026-10-01T00:00:00Z",
            "credentials": [{"name": "prod", "value": "sk-acme-1"}],
        }
    ],
}


def write_catalog(directory: Path, document: dict | str, name: str = "main.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def base() -> dict:
    return copy.deepcopy(BASE)


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    # the exception's text carries every problem too
    for problem in caught.value.problems:
        assert problem in str(caught.value)
    return caught.value.problems


def single_problem(directory: Path) -> str:
    problems = problems_of(directory)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid catalogs ---------------------------------------------------------------------------


def test_tutorial_catalog_loads():
    catalog = load_catalog(TUTORIAL)
    assert [p.id for p in catalog.products] == ["docsum-summaries", "docsum-research"]
    assert len(catalog.organizations) == 4
    assert len(catalog.subscribers) == 5
    assert len(catalog.subscriptions) == 5
    summaries = catalog.product("docsum-summaries")
    assert summaries.recurring_charge == Decimal("199.00")
    assert summaries.minor_units == 2
    assert [t.up_to for t in summaries.metrics[0].tiers] == [Decimal(1000), None]
    assert [t.unit_rate for t in summaries.metrics[0].tiers] == [Decimal("1.50"), Decimal("1.35")]
    assert summaries.metrics[0].notify_at_percent == [80, 100]
    umbrella = next(s for s in catalog.subscriptions if s.id == "umbrella-summaries")
    assert umbrella.end == datetime(2026, 10, 21, tzinfo=UTC)
    assert overlapping_subscriptions(catalog) == []


def test_base_catalog_loads(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, base()))
    assert catalog.subscriptions[0].start == datetime(2026, 10, 1, tzinfo=UTC)


def test_files_are_merged(tmp_path):
    document = base()
    customers = {key: document.pop(key) for key in ("organizations", "subscribers", "subscriptions")}
    write_catalog(tmp_path, document, "products.yaml")
    write_catalog(tmp_path, customers, "customers.yml")
    catalog = load_catalog(tmp_path)
    assert [p.id for p in catalog.products] == ["docsum"]
    assert [s.id for s in catalog.subscriptions] == ["acme-docsum"]


def test_empty_directory_is_an_error(tmp_path):
    problem = single_problem(tmp_path)
    assert str(tmp_path) in problem


def test_money_from_yaml_floats_is_exact(tmp_path):
    text = """
products:
  - id: docsum
    name: DocSum
    recurring_charge: 199.99
    setup_fee: 0.1
    metrics:
      - name: Summaries
        tiers:
          - {name: a, up_to: 1000, unit_rate: 1.35, fixed_fee: 2.675}
          - {name: b, up_to: null, unit_rate: 0.000001}
"""
    catalog = load_catalog(write_catalog(tmp_path, text))
    product = catalog.products[0]
    tiers = product.metrics[0].tiers
    # float(1.35) is 1.350000000000000088817841970012523...; the contract keeps the written text
    assert tiers[0].unit_rate == Decimal("1.35")
    assert tiers[0].unit_rate != Decimal(1.35)
    assert tiers[0].fixed_fee == Decimal("2.675")
    assert tiers[1].unit_rate == Decimal("0.000001")
    assert product.recurring_charge == Decimal("199.99")
    assert product.setup_fee == Decimal("0.1")


# --- invalid catalogs: each names file, YAML path and field ---------------------------------


def test_invalid_yaml_names_file_and_line(tmp_path):
    text = "products:\n  - id: docsum\n    name: DocSum: broken\n    currency: USD\n"
    # line 3 holds a second ': ' inside a plain scalar: "mapping values are not allowed here"
    problem = single_problem(write_catalog(tmp_path, text, "broken.yaml"))
    assert problem.startswith("broken.yaml:")
    assert "line 3" in problem
    assert "invalid YAML" in problem


def test_unknown_field(tmp_path):
    document = base()
    document["products"][0]["colour"] = "red"
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].colour:")
    assert "Extra inputs are not permitted" in problem


def test_unknown_top_level_section(tmp_path):
    document = base()
    document["customers"] = []
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: customers:")


def test_tiers_out_of_order(tmp_path):
    document = base()
    document["products"][0]["metrics"][0]["tiers"] = [
        {"name": "a", "up_to": 1000, "unit_rate": "1.50"},
        {"name": "b", "up_to": 500, "unit_rate": "1.40"},  # 500 <= 1000
        {"name": "c", "up_to": None, "unit_rate": "1.35"},
    ]
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].metrics[0]")
    assert "tiers[1].up_to" in problem
    assert "greater than the previous" in problem


def test_equal_tier_bounds_are_out_of_order(tmp_path):
    document = base()
    document["products"][0]["metrics"][0]["tiers"] = [
        {"name": "a", "up_to": 1000, "unit_rate": "1.50"},
        {"name": "b", "up_to": 1000, "unit_rate": "1.40"},
        {"name": "c", "up_to": None, "unit_rate": "1.35"},
    ]
    problem = single_problem(write_catalog(tmp_path, document))
    assert "products[0].metrics[0]" in problem and "tiers[1].up_to" in problem


def test_tier_after_the_unbounded_one(tmp_path):
    document = base()
    document["products"][0]["metrics"][0]["tiers"] = [
        {"name": "a", "up_to": 1000, "unit_rate": "1.50"},
        {"name": "b", "up_to": None, "unit_rate": "1.35"},
        {"name": "c", "up_to": None, "unit_rate": "1.20"},
    ]
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].metrics[0]")
    assert "tiers[1]" in problem and "unbounded" in problem


def test_last_tier_bounded(tmp_path):
    document = base()
    document["products"][0]["metrics"][0]["tiers"][1]["up_to"] = 2000
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].metrics[0]")
    assert "tiers[1]" in problem and "up_to: null" in problem


def test_negative_unit_rate(tmp_path):
    document = base()
    document["products"][0]["metrics"][0]["tiers"][0]["unit_rate"] = "-1.50"
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].metrics[0].tiers[0].unit_rate:")
    assert "greater than or equal to 0" in problem


def test_unknown_currency(tmp_path):
    document = base()
    document["products"][0]["currency"] = "XYZ"
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: products[0].currency:")
    assert "'XYZ'" in problem


def test_currency_is_case_insensitive(tmp_path):
    document = base()
    document["products"][0]["currency"] = "jpy"
    assert load_catalog(write_catalog(tmp_path, document)).products[0].minor_units == 0


def test_duplicate_product_id_across_two_files(tmp_path):
    write_catalog(tmp_path, base(), "a.yaml")
    write_catalog(tmp_path, {"products": [{"id": "docsum", "name": "DocSum again"}]}, "b.yaml")
    problem = single_problem(tmp_path)
    # b.yaml sorts after a.yaml: the second one is reported, pointing back at the first
    assert problem.startswith("b.yaml: products[0].id:")
    assert "'docsum'" in problem and "a.yaml" in problem


def test_subscription_referencing_unknown_product_and_subscriber(tmp_path):
    document = base()
    document["subscriptions"][0]["product"] = "no-such-product"
    document["subscriptions"][0]["subscriber"] = "ghost"
    problems = problems_of(write_catalog(tmp_path, document))
    assert sorted(problems) == sorted(
        [
            "main.yaml: subscriptions[0].product: unknown product 'no-such-product'",
            "main.yaml: subscriptions[0].subscriber: unknown subscriber 'ghost'",
        ]
    )


def test_plan_change_to_unknown_product(tmp_path):
    document = base()
    document["subscriptions"][0]["changes"] = [{"at": "2026-11-15T00:00:00Z", "product": "nope"}]
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: subscriptions[0].changes[0].product:")


def test_credential_value_used_by_two_subscriptions(tmp_path):
    document = base()
    document["subscriptions"].append(
        {
            "id": "acme-docsum-2027",
            "subscriber": "acme-ap",
            "product": "docsum",
            "start": "2027-10-01T00:00:00Z",
            "credentials": [{"name": "other", "value": "sk-acme-1"}],
        }
    )
    document["subscriptions"][0]["end"] = "2027-10-01T00:00:00Z"
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: subscriptions[1].credentials[0].value:")
    assert "'acme-docsum'" in problem


def test_plan_change_before_start(tmp_path):
    document = base()
    document["subscriptions"][0]["changes"] = [{"at": "2026-09-15T00:00:00Z", "product": "docsum"}]
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: subscriptions[0]")
    assert "changes[0].at" in problem
    assert "after the start" in problem


def test_end_before_start(tmp_path):
    document = base()
    document["subscriptions"][0]["end"] = "2026-09-01T00:00:00Z"
    problem = single_problem(write_catalog(tmp_path, document))
    assert problem.startswith("main.yaml: subscriptions[0]")
    assert "end must be after start" in problem


def test_rate_with_13_decimals(tmp_path):
    document = base()
    # 12 decimals are allowed ...
    document["products"][0]["metrics"][0]["tiers"][0]["unit_rate"] = "0.000000000001"
    assert load_catalog(write_catalog(tmp_path / "ok", document)).products[0].metrics[0].tiers[0].unit_rate == (
        Decimal("1E-12")
    )
    # ... 13 are not
    document["products"][0]["metrics"][0]["tiers"][0]["unit_rate"] = "1.0000000000001"
    problem = single_problem(write_catalog(tmp_path / "bad", document))
    assert problem.startswith("main.yaml: products[0].metrics[0].tiers[0].unit_rate:")
    assert "12 decimal places" in problem


def test_rate_with_13_decimals_as_yaml_float(tmp_path):
    text = yaml.safe_dump(base(), sort_keys=False).replace("unit_rate: '1.50'", "unit_rate: 1.0000000000001")
    assert "unit_rate: 1.0000000000001" in text
    problem = single_problem(write_catalog(tmp_path, text))
    assert problem.startswith("main.yaml: products[0].metrics[0].tiers[0].unit_rate:")


def test_tier_bound_must_fit_the_warehouse_column(tmp_path):
    # catalog.tiers.upper_bound is decimal(21,10): at most 10 decimals and 11 integer digits.
    # A bound of 1000.00000000001 (11 decimals) would otherwise be cut to 1000 silently, and
    # 123456789012 (12 integer digits) would fail later inside the catalog load.
    for index, bound in enumerate(["1000.00000000001", "123456789012"]):
        document = base()
        document["products"][0]["metrics"][0]["tiers"][0]["up_to"] = bound
        problem = single_problem(write_catalog(tmp_path / str(index), document))
        assert problem.startswith("main.yaml: products[0].metrics[0].tiers[0].up_to:"), problem
    # 10 decimals and 11 integer digits are fine: 12345678901.0000000001 has 21 digits
    document = base()
    document["products"][0]["metrics"][0]["tiers"][0]["up_to"] = "12345678901.0000000001"
    catalog = load_catalog(write_catalog(tmp_path / "ok", document))
    assert catalog.products[0].metrics[0].tiers[0].up_to == Decimal("12345678901.0000000001")


def test_a_file_is_rejected_whole_and_every_problem_is_reported(tmp_path):
    document = base()
    document["products"][0]["currency"] = "XYZ"
    document["products"][0]["metrics"][0]["tiers"][0]["unit_rate"] = "-1"
    write_catalog(tmp_path, document, "a.yaml")
    write_catalog(tmp_path, "products: [\n", "b.yaml")
    problems = problems_of(tmp_path)
    assert len(problems) == 3, problems
    assert sum(p.startswith("a.yaml: ") for p in problems) == 2
    assert sum(p.startswith("b.yaml:") for p in problems) == 1


# --- overlaps -------------------------------------------------------------------------------


def _with_second_subscription(start: str, end_of_first: str | None) -> Catalog:
    document = base()
    document["subscriptions"][0]["end"] = end_of_first
    document["subscriptions"].append(
        {"id": "acme-docsum-2", "subscriber": "acme-ap", "product": "docsum", "start": start}
    )
    return Catalog.model_validate(document)


def test_overlapping_subscriptions_detected():
    # first runs [Oct 1, Dec 1), second starts Nov 1: overlap
    catalog = _with_second_subscription("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    problems = overlapping_subscriptions(catalog)
    assert len(problems) == 1
    assert "'acme-docsum'" in problems[0] and "'acme-docsum-2'" in problems[0] and "'docsum'" in problems[0]


def test_open_ended_subscription_overlaps_any_later_one():
    catalog = _with_second_subscription("2027-01-01T00:00:00Z", None)
    assert len(overlapping_subscriptions(catalog)) == 1


def test_back_to_back_subscriptions_do_not_overlap():
    # half-open terms: [Oct 1, Dec 1) and [Dec 1, ...) touch but do not overlap
    catalog = _with_second_subscription("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert overlapping_subscriptions(catalog) == []


def test_overlap_through_a_plan_change():
    document = base()
    document["products"].append({"id": "docsum-pro", "name": "DocSum Pro"})
    document["subscriptions"][0]["changes"] = [{"at": "2026-11-01T00:00:00Z", "product": "docsum-pro"}]
    document["subscriptions"].append(
        {"id": "acme-pro", "subscriber": "acme-ap", "product": "docsum-pro", "start": "2026-12-01T00:00:00Z"}
    )
    problems = overlapping_subscriptions(Catalog.model_validate(document))
    assert len(problems) == 1 and "'docsum-pro'" in problems[0]


# --- JSON schema drift ------------------------------------------------------------------------


def test_checked_in_json_schemas_are_current():
    result = subprocess.run(
        [sys.executable, "-m", "contracts", "--check"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_metering_event_schema_requires_request_time():
    schema = MeteringEvent.model_json_schema()
    assert "requestTime" in schema["required"]
    assert "subscriber" in schema["required"]
    checked_in = json.loads((REPO / "contracts" / "schemas" / "metering_event.schema.json").read_text())
    assert "requestTime" in checked_in["required"]
    assert checked_in["properties"]["requestTime"]["format"] == "date-time"
