"""Ids that reach file names cannot leave the data dir: ``../``, absolute paths, NUL, links.

Every place that builds a file path from data goes through ``dagster_project.lib.safe_paths.child``:
invoice documents (``invoicing/render.py``), the invoice attached to an e-mail
(``notifications/events.py``) and outbox files named after notification keys
(``notifications/delivery.py``). Catalog ids are refused earlier, by the contract.
"""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from contracts.catalog import CatalogError, load_catalog
from dagster_project.invoicing.render import invoice_path, pdf_path
from dagster_project.lib.safe_paths import UnsafePathError, child
from dagster_project.notifications.delivery import OutboxDelivery
from tests.reliability.fuzz import budget

HOSTILE = [
    "../../etc/passwd", "..", ".", "/etc/passwd", "a/../../b", "a\x00b", "..\\..\\windows", "MH-2026-000001/../../x",
    ".hidden", "", "x" * 300, "~/x",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_child_refuses_names_that_leave_the_directory(tmp_path: Path, name: str) -> None:
    if name == "~/x":
        with pytest.raises(UnsafePathError):
            child(tmp_path, name)
        return
    with pytest.raises(UnsafePathError):
        child(tmp_path, name, ".html")


def test_child_refuses_a_symbolic_link_that_points_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside.html"
    outside.write_text("secret", encoding="utf-8")
    inside = tmp_path / "invoices"
    inside.mkdir()
    os.symlink(outside, inside / "MH-2026-000001.html")
    with pytest.raises(UnsafePathError, match="outside"):
        child(inside, "MH-2026-000001", ".html")


def test_child_accepts_a_link_within_the_directory_and_a_linked_directory(tmp_path: Path) -> None:
    # only where a name leads counts: a data dir reached through a link is fine
    real = tmp_path / "real-invoices"
    real.mkdir()
    (real / "MH-2026-000002.html").write_text("second", encoding="utf-8")
    os.symlink(real / "MH-2026-000002.html", real / "MH-2026-000001.html")
    os.symlink(real, tmp_path / "invoices")
    assert child(real, "MH-2026-000001", ".html") == real / "MH-2026-000001.html"
    assert child(tmp_path / "invoices", "MH-2026-000001", ".html") == tmp_path / "invoices" / "MH-2026-000001.html"


def test_child_accepts_plain_names(tmp_path: Path) -> None:
    assert child(tmp_path, "MH-2026-000001", ".html") == tmp_path / "MH-2026-000001.html"
    assert child(tmp_path, "acme-labs:research@2026.10") == tmp_path / "acme-labs:research@2026.10"


@budget(200)
@given(name=st.text(min_size=1, max_size=40))
def test_any_name_child_accepts_stays_inside(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    root = Path("/tmp/mh-safe-paths-root")
    root.mkdir(exist_ok=True)
    try:
        path = child(root, name, ".html")
    except UnsafePathError:
        return
    assert path.resolve().parent == root.resolve()
    assert "\x00" not in str(path)


@pytest.mark.parametrize("number", ["../MH-2026-000001", "MH-2026-000001/../../x", "/tmp/x", "MH-2026-00000\x001"])
def test_invoice_document_paths_refuse_hostile_numbers(tmp_path: Path, number: str) -> None:
    with pytest.raises(ValueError):
        invoice_path(tmp_path, number)
    with pytest.raises(ValueError):
        pdf_path(tmp_path, number)


@pytest.mark.parametrize("key", ["new_invoice:../../../etc/cron.d/x", "/etc/passwd", "..", "a\x00b", "....//...."])
def test_outbox_file_names_from_notification_keys_stay_in_the_outbox(tmp_path: Path, key: str) -> None:
    outbox = tmp_path / "data" / "outbox"
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content("x")
    written = Path(OutboxDelivery(outbox).deliver(message, key))
    assert written.resolve().parent == outbox.resolve()
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == [written.name]


@pytest.mark.parametrize("field,value", [
    ("products[0].id", "../../evil"), ("products[0].id", "/abs"), ("products[0].id", "a\x00b"),
    ("subscriptions[0].id", "../x"), ("subscribers[0].id", "a/b"), ("organizations[0].id", ".."),
    ("subscriptions[0].id", "it's"),
])
def test_catalog_ids_that_could_name_files_are_refused_with_file_and_field(
    tmp_path: Path, field: str, value: str
) -> None:
    document = {
        "products": [{"id": "p", "name": "P", "metrics": []}],
        "organizations": [{"id": "o", "name": "O"}],
        "subscribers": [{"id": "s", "organization": "o"}],
        "subscriptions": [{"id": "sub", "subscriber": "s", "product": "p", "start": "2026-10-01T00:00:00Z"}],
    }
    section, rest = field.split("[", 1)
    document[section][int(rest[0])]["id"] = value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as error:
        load_catalog(tmp_path)
    assert any(problem.startswith(f"bad.yaml: {field}") for problem in error.value.problems), error.value.problems
