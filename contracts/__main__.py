"""`python -m contracts [--check]`: export the JSON Schemas, or fail if the checked-in ones drifted."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from contracts.catalog import export_json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as scratch:
            fresh = export_json_schemas(Path(scratch))
            stale = [p.name for p in fresh if not (SCHEMA_DIR / p.name).exists()
                     or (SCHEMA_DIR / p.name).read_bytes() != p.read_bytes()]
        if stale:
            print(f"contracts: JSON Schema out of date: {', '.join(stale)}; run `python -m contracts`", file=sys.stderr)
            return 1
        return 0
    for path in export_json_schemas(SCHEMA_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
