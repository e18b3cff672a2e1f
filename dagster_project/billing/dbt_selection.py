"""The dbt selections of the asset definitions, kept per manifest, so that the process of a
``meterhouse bill`` run can leave dbt to its worker and never import it.

dagster-dbt imports dbt-core (``dagster_dbt.compat``) and evaluates the ``select``/``exclude`` of
every ``@dbt_assets`` with dbt's graph selector when the definitions are built: ~1.3 s of dbt's
Python in the command's process before the run starts (docs/performance.md). Under
``meterhouse bill`` dbt itself runs in the worker process (``dbt_worker.py``) and the run's
process needs dbt for nothing else: it turns the worker's result events (dicts) into Dagster
events. dagster-dbt works without dbt-core, as it must for dbt Fusion (no Python package): it
then uses its own copies of dbt's node types and statuses (the same strings), and evaluates no
selection other than "every node".

So:

* dagster-dbt's selections go through :func:`select_unique_ids` (``use_kept_selections``). It
  answers from ``<dbt target>/dagster_selections.json`` when that file holds the selection for
  this very manifest (dbt's ``invocation_id``, new at every parse); otherwise dagster-dbt
  evaluates it with dbt, as before, and the answer is written there. ``make install`` writes
  the file for :data:`SELECTIONS`.
* :func:`dbt_left_to_worker`: in a process that has imported neither dbt nor dagster-dbt, whose
  dbt worker runs, and when the file holds every selection of :data:`SELECTIONS` for the
  current manifest, dbt's packages cannot be imported for the duration of the block, so
  dagster-dbt starts without dbt-core. In any other case nothing changes.
* For that block the manifest and its selections are pinned as they were read together
  (:func:`manifest_for_definitions`): another process may parse the project meanwhile
  (``meterhouse ui`` runs ``dagster dev``, which parses on load), and a manifest read again
  would then have no kept selections, which this process could not evaluate without dbt.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_project import settings

SELECTIONS_FILE = "dagster_selections.json"
# dbt-core's import names (dbt-duckdb and the other adapters live under ``dbt.``)
DBT_PACKAGES = ("dbt", "dbt_common")


@dataclass(frozen=True)
class Selection:
    select: str = "fqn:*"
    exclude: str = ""
    selector: str = ""

    def key(self) -> str:
        return json.dumps([self.select, self.exclude, self.selector])


# the @dbt_assets of the definitions (billing/assets.py, reporting/assets.py)
RATING = Selection(exclude="tag:reporting")
REPORTING = Selection(select="tag:reporting")
SELECTIONS = (RATING, REPORTING)


def manifest_path() -> Path:
    """Where dagster-dbt reads the manifest (``DbtProject``'s default target path)."""
    return settings.DBT_PROJECT_DIR / "target" / "manifest.json"


def _manifest_id(manifest: Mapping[str, Any]) -> str | None:
    return manifest.get("metadata", {}).get("invocation_id")


def _kept_for(manifest_id: str | None, selections_file: Path) -> dict[str, list[str]]:
    """The selections kept for the manifest of that dbt invocation id ({} when none are)."""
    if manifest_id is None:
        return {}
    try:
        kept = json.loads(selections_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict) or kept.get("manifest") != manifest_id:
        return {}
    return kept.get("selections", {})


@dataclass(frozen=True)
class _Pinned:
    manifest: dict[str, Any]
    selections: dict[str, list[str]]


# while dbt is left to the worker: the manifest the definitions are built from, and its selections
_PINNED: _Pinned | None = None


def _all_kept_now(manifest_file: Path) -> _Pinned | None:
    """The manifest as it is now with its kept selections, when every selection of the
    definitions is kept for it."""
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kept = _kept_for(_manifest_id(manifest), manifest_file.parent / SELECTIONS_FILE)
    if not all(selection.key() in kept for selection in SELECTIONS):
        return None
    return _Pinned(manifest, kept)


def all_kept(manifest_file: Path | None = None) -> bool:
    """Whether every selection of the definitions is kept for the manifest as it is now."""
    return _all_kept_now(manifest_file or manifest_path()) is not None


def manifest_for_definitions(manifest_file: Path) -> dict[str, Any] | Path:
    """What the ``@dbt_assets`` are built from: the pinned manifest while dbt is left to the
    worker, else the file (dagster-dbt reads it)."""
    return _PINNED.manifest if _PINNED is not None else manifest_file


def _keep(selections_file: Path, manifest_id: str, selection: Selection, unique_ids: set[str]) -> None:
    kept = _kept_for(manifest_id, selections_file)
    kept[selection.key()] = sorted(unique_ids)
    temporary = selections_file.with_name(f".{SELECTIONS_FILE}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps({"manifest": manifest_id, "selections": kept}, indent=1), encoding="utf-8")
        os.replace(temporary, selections_file)  # readers see the old file or the new one, whole
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only checkout: evaluated again next time, as before


def select_unique_ids(select: str, exclude: str, selector: str, project: Any,
                      manifest_json: Mapping[str, Any]) -> set[str]:
    """dagster-dbt's ``select_unique_ids``, answered from the kept selections when it can be."""
    from dagster_dbt import utils

    selection = Selection(select, exclude, selector)
    manifest_id = _manifest_id(manifest_json)
    if _PINNED is not None and manifest_id == _manifest_id(_PINNED.manifest) and selection.key() in _PINNED.selections:
        return set(_PINNED.selections[selection.key()])
    selections_file = Path(project.manifest_path).parent / SELECTIONS_FILE if project is not None else None
    kept = _kept_for(manifest_id, selections_file) if selections_file else {}
    if selection.key() in kept:
        return set(kept[selection.key()])
    unique_ids = set(utils.select_unique_ids(select, exclude, selector, project, manifest_json))
    if selections_file is not None and manifest_id is not None:
        _keep(selections_file, manifest_id, selection, unique_ids)
    return unique_ids


def use_kept_selections() -> None:
    """Route dagster-dbt's selections through :func:`select_unique_ids` (idempotent). Called by the
    modules that define ``@dbt_assets``, before they do."""
    from dagster_dbt import asset_utils

    if not callable(getattr(asset_utils, "select_unique_ids", None)):  # dagster-dbt is pinned; say so if it moved
        raise RuntimeError("dagster_dbt.asset_utils.select_unique_ids is gone: see billing/dbt_selection.py")
    asset_utils.select_unique_ids = select_unique_ids


class _DbtLeftToWorker(importlib.abc.MetaPathFinder):
    """Refuses dbt's packages: dagster-dbt then starts as it does where dbt-core is not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in DBT_PACKAGES:
            raise ImportError(f"{name}: this run's dbt runs in its worker process (billing/dbt_worker.py)",
                              name=name)
        return None


@contextmanager
def dbt_left_to_worker(worker_running: bool) -> Iterator[bool]:
    """For the block, dbt is not importable in this process, when that is safe (see the module
    docstring); yields whether it is so."""
    global _PINNED
    fresh = not any(name in sys.modules for name in (*DBT_PACKAGES, "dagster_dbt"))
    pinned = _all_kept_now(manifest_path()) if worker_running and fresh else None
    if pinned is None:
        yield False
        return
    finder = _DbtLeftToWorker()
    _PINNED = pinned
    sys.meta_path.insert(0, finder)
    try:
        yield True
    finally:
        sys.meta_path.remove(finder)
        _PINNED = None


if __name__ == "__main__":
    # `make install`, after `dbt parse`: the selections of the definitions for the new manifest
    from dagster_dbt import DbtProject

    project = DbtProject(project_dir=settings.DBT_PROJECT_DIR, profiles_dir=settings.DBT_PROJECT_DIR)
    loaded = json.loads(Path(project.manifest_path).read_text(encoding="utf-8"))
    for each in SELECTIONS:
        select_unique_ids(each.select, each.exclude, each.selector, project, loaded)
