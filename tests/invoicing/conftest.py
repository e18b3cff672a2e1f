"""The invoice documents' shared fixture (test_void and test_lineage define their own ``issued``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import render
from tests.invoicing.ledger import NUMBER, make_data_dir


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-worked invoice issued in a branded data dir: its HTML and PDF written."""
    root = make_data_dir(tmp_path_factory.mktemp("issued"))
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        written = render.write_documents(connection, root)
    assert [document.invoice_number for document in written] == [NUMBER]
    return root
