"""Finance reporting: margin marts (dbt, tag `reporting`), Parquet snapshots, lookups,
the dashboard and price simulation (docs/finance.md)."""
