"""Meterhouse: an analytical batch billing warehouse for AI products.

``dagster dev -m dagster_project`` finds ``defs`` here. Importing the Dagster definitions
pulls in dagster and dbt (several seconds), so plain uses of the package (the CLI's
read-only commands, the pure billing logic) don't pay for it: the definitions are loaded
only when Dagster itself is already imported, as it is when Dagster loads this module.
"""

import sys
import warnings

# Dagster marks two features Meterhouse relies on as beta/preview (a single-run backfill policy,
# partitioned blocking asset checks): known and pinned (dagster==1.13.27), not news on every run.
warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")

if "dagster" in sys.modules:
    from dagster_project.definitions import defs  # noqa: F401
