"""The ``meterhouse`` command line (SPEC §5).

Exit codes: 0 success; 1 failure with a one-line reason on stderr; 2 bad usage.
Read-only commands don't import Dagster or dbt, so they answer in well under a second.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dagster_project import settings

app = typer.Typer(
    name="meterhouse",
    help="Meterhouse: metering logs in; invoices, payments and margin out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# tables stay readable when piped (a pipe has no width; rich would assume 80 columns)
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: $METERHOUSE_DATA_DIR, else ./data).", show_default=False),
]
AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="The run's clock (RFC 3339); default $METERHOUSE_AS_OF, else now.", hidden=True),
]


class UsageError(Exception):
    """Bad arguments found after parsing: exit code 2."""


def fails_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any failure into exit 1 with a one-line reason (2 for usage errors)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except UsageError as error:
            errors.print(f"meterhouse: {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from error
        except Exception as error:  # the one place that turns errors into exit codes
            reason = " ".join(str(error).split()) or type(error).__name__
            errors.print(f"meterhouse: error: {reason}", highlight=False, soft_wrap=True, markup=False)
            if os.environ.get("METERHOUSE_DEBUG"):
                raise
            raise typer.Exit(1) from error

    return wrapper


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@app.command()
@fails_cleanly
def init(
    example: Annotated[str, typer.Option("--example", help="Example catalog to write.")] = "tutorial",
    data_dir: DataDir = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite catalog files that differ.")] = False,
) -> None:
    """Write a sample catalog into the data directory."""
    source = settings.EXAMPLES_DIR / example / "catalog"
    if not source.is_dir():
        known = sorted(path.name for path in settings.EXAMPLES_DIR.iterdir() if path.is_dir())
        raise UsageError(f"unknown example {example!r}; known: {', '.join(known)}")
    target = settings.data_dir(data_dir) / "catalog"
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("*.yaml")):
        destination = target / file.name
        if destination.exists() and destination.read_bytes() != file.read_bytes() and not force:
            raise RuntimeError(f"{destination} exists and differs; use --force to overwrite")
        shutil.copyfile(file, destination)
        console.print(f"wrote {destination}")
    for folder in ("landing/events", "invoices", "outbox", "dashboards"):
        (target.parent / folder).mkdir(parents=True, exist_ok=True)


@app.command()
@fails_cleanly
def generate(
    events: Annotated[int, typer.Option("--events", min=1, help="Number of events to write.")],
    start: Annotated[str, typer.Option("--start", help="First instant (RFC 3339 or YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="End instant, exclusive.")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    bad_fraction: Annotated[float, typer.Option("--bad-fraction", min=0.0, max=1.0)] = 0.0,
    duplicate_fraction: Annotated[float, typer.Option("--duplicate-fraction", min=0.0, max=1.0)] = 0.0,
    data_dir: DataDir = None,
) -> None:
    """Write realistic synthetic events into landing/events/."""
    from contracts.catalog import catalog_dir_of, load_catalog
    from dagster_project.generate import generate_events

    root = settings.data_dir(data_dir)
    start_at, end_at = _instant(start, "--start"), _instant(end, "--end")
    if end_at <= start_at:
        raise UsageError("--end must be after --start")
    report = generate_events(
        load_catalog(catalog_dir_of(root)), root / "landing", events, start_at, end_at,
        seed=seed, bad_fraction=bad_fraction, duplicate_fraction=duplicate_fraction, progress=sys.stderr.isatty(),
    )
    console.print(
        f"wrote {report.lines_written:,} lines ({report.events:,} events, {report.bad_lines:,} bad,"
        f" {report.duplicate_lines:,} duplicates) for {report.subscriptions} subscriptions into"
        f" {len(report.files)} file(s) under {root / 'landing' / 'events'} in {report.seconds:.1f} s"
    )


def _instant(text: str, option: str) -> datetime:
    try:
        return settings.parse_instant(text if "T" in text or ":" in text else f"{text}T00:00:00Z")
    except ValueError as error:
        raise UsageError(f"{option}: {text!r} is not an RFC 3339 instant or a date") from error


def _run_billing(
    root: Path, period: str, as_of: str | None, last_partition_key: str | None = None, wait: float = 0.0
) -> dict:
    """Materialize the whole asset graph for one billing period through Dagster."""
    from dagster_project.partitions import partition_key_for

    try:
        partition_key = partition_key_for(period)
    except ValueError as error:
        raise UsageError(str(error)) from error
    clock = settings.as_of(as_of).isoformat()
    os.environ.setdefault("DAGSTER_HOME", str(root / ".dagster"))
    from dagster_project.billing import dbt_selection, dbt_worker
    from dagster_project.lib.gc_tuning import tune_for_batch_process
    from dagster_project.runner import bill_partition

    tune_for_batch_process()

    # dagster-dbt echoes dbt's own log to stdout; keep it in a file so stdout stays this command's answer
    log_path = root / ".dagster" / "last_bill.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        # dbt gets ready in a second process while this one imports Dagster (billing/dbt_worker.py)
        dbt_worker.started(root / ".dbt" / "parse") if settings.engine() == "duckdb" else contextlib.nullcontext()
        as worker,
        # ... and this one, which dbt no longer runs in, does not import it (billing/dbt_selection.py)
        dbt_selection.dbt_left_to_worker(worker is not None),
        errors.status(f"Billing {period}: ingest, catalog, dbt rating, invoices, payments, notifications…"),
        log_path.open("w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
    ):
        return bill_partition(root, partition_key, clock, last_partition_key=last_partition_key, wait_seconds=wait)


@app.command()
@fails_cleanly
def bill(
    period: Annotated[str, typer.Option("--period", help="Billing period, e.g. 2026-10.")],
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for another run to finish.")] = 0.0,
    data_dir: DataDir = None,
    as_of: AsOf = None,
) -> None:
    """Materialize every asset for billing period P, issuing what is due."""
    root = settings.data_dir(data_dir)
    summary = _run_billing(root, period, as_of, wait=wait)
    if summary["issued"]:
        _print_invoices(root, summary["issued"], title=f"Issued for {period}")
    console.print(
        f"{len(summary['issued'])} invoice(s) issued, {summary['held']} held; documents in {root / 'invoices'}"
    )


@app.command()
@fails_cleanly
def backfill(
    from_period: Annotated[str, typer.Option("--from", help="First billing period, e.g. 2026-01.")],
    to_period: Annotated[str, typer.Option("--to", help="Last billing period, inclusive.")],
    single_run: Annotated[
        bool, typer.Option("--single-run", help="One Dagster run for the whole range instead of one per period.")
    ] = False,
    data_dir: DataDir = None,
    as_of: AsOf = None,
) -> None:
    """Bill a range of periods, oldest first; rerunning a range issues nothing new."""
    from dagster_project.partitions import partition_key_for

    root = settings.data_dir(data_dir)
    try:
        first, last = partition_key_for(from_period), partition_key_for(to_period)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if last < first:
        raise UsageError("--to must not be before --from")
    if single_run:
        summary = _run_billing(root, from_period, as_of, last_partition_key=last)
        console.print(f"{from_period}..{to_period}: {len(summary['issued'])} issued, {summary['held']} held")
        return
    total = 0
    year, month = int(first[:4]), int(first[5:7])
    while f"{year:04d}-{month:02d}-01" <= last:
        summary = _run_billing(root, f"{year:04d}-{month:02d}", as_of)
        console.print(f"{year:04d}-{month:02d}: {len(summary['issued'])} issued, {summary['held']} held")
        total += len(summary["issued"])
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    console.print(f"{total} invoice(s) issued in all")


def _invoice_rows(root: Path, where: str = "", parameters: list | None = None) -> list[dict]:
    from dagster_project import warehouse

    with warehouse.connect(root, read_only=True) as connection:
        result = connection.execute(
            "select invoice_number, subscription_id, organization_id, subscriber_email, product_id, currency,"
            " period_start, period_end, issued_at, status, subtotal, total, payment_status, payment_reference"
            f" from marts.invoices {where} order by invoice_number nulls last, period_start, subscription_id",
            parameters or [],
        )
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _print_invoices(root: Path, numbers: list[str] | None = None, title: str = "Invoices", rows=None) -> None:
    from dagster_project.lib.money import format_money

    if rows is None:
        rows = _invoice_rows(root)
        if numbers is not None:
            rows = [row for row in rows if row["invoice_number"] in set(numbers)]
    table = Table(title=title, show_lines=False)
    for column in ("Number", "Subscription", "Organization", "Period", "Status", "Total", "Payment"):
        table.add_column(column, justify="right" if column == "Total" else "left")
    for row in rows:
        table.add_row(
            row["invoice_number"] or "(held)", row["subscription_id"], row["organization_id"] or "",
            f"{row['period_start']:%Y-%m-%d} → {row['period_end']:%Y-%m-%d}", row["status"],
            format_money(row["total"], row["currency"]), row["payment_status"],
        )
    console.print(table)


@app.command()
@fails_cleanly
def invoices(
    period: Annotated[str | None, typer.Option("--period", help="Only invoices closing in this period.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List invoices."""
    root = settings.data_dir(data_dir)
    where, parameters = "", []
    if period:
        from dagster_project.lib.periods import add_units

        try:
            start = datetime.strptime(period, "%Y-%m")
        except ValueError as error:
            raise UsageError(f"--period {period!r}: expected YYYY-MM") from error
        where, parameters = "where period_end > ? and period_end <= ?", [start, add_units(start, "month", 1)]
    rows = _invoice_rows(root, where, parameters)
    if as_json:
        sys.stdout.write(json.dumps(rows, default=_json_default, indent=2) + "\n")
    else:
        _print_invoices(root, rows=rows)


@app.command()
@fails_cleanly
def invoice(
    number: Annotated[str, typer.Argument(help="Invoice number, e.g. MH-2026-000001.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    events: Annotated[
        bool, typer.Option("--events", help="List the metering events behind each usage line (lineage).")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Show one invoice with its lines, or with --events the events each usage line was rated from."""
    from dagster_project import warehouse
    from dagster_project.lib.money import format_money

    root = settings.data_dir(data_dir)
    rows = _invoice_rows(root, "where invoice_number = ?", [number])
    if not rows:
        raise RuntimeError(f"no invoice {number!r}")
    if events:
        _print_invoice_events(root, number, as_json)
        return
    with warehouse.connect(root, read_only=True) as connection:
        result = connection.execute(
            "select line_number, kind, metric, tier_name, quantity, unit_rate, amount, event_count, period_start,"
            " period_end, description from marts.invoice_lines where invoice_number = ? order by line_number",
            [number],
        )
        names = [column[0] for column in result.description]
        lines = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    header = rows[0]
    if as_json:
        sys.stdout.write(json.dumps({**header, "lines": lines}, default=_json_default, indent=2) + "\n")
        return
    table = Table(title=f"{number} · {header['subscription_id']} · {header['status']}")
    for column in ("#", "Kind", "Metric", "Tier", "Quantity", "Unit rate", "Amount"):
        table.add_column(column, justify="right" if column in ("Quantity", "Unit rate", "Amount") else "left")
    for line in lines:
        table.add_row(
            str(line["line_number"]), line["kind"], line["metric"] or line["description"] or "",
            line["tier_name"] or "", "" if line["quantity"] is None else f"{line['quantity'].normalize():f}",
            "" if line["unit_rate"] is None else f"{line['unit_rate'].normalize():f}",
            format_money(line["amount"], header["currency"]),
        )
    console.print(table)
    console.print(f"Total: {format_money(header['total'], header['currency'])}")


def _print_invoice_events(root: Path, number: str, as_json: bool) -> None:
    """Lineage of one invoice: per usage line the events found, then each event once."""
    from dagster_project import warehouse
    from dagster_project.invoicing.lineage import invoice_lineage

    with warehouse.connect(root, read_only=True) as connection:
        summaries, found = invoice_lineage(connection, number)
    if as_json:
        document = {"invoice_number": number, "lines": summaries, "events": [event.as_dict() for event in found]}
        sys.stdout.write(json.dumps(document, default=_json_default, indent=2) + "\n")
    else:
        table = Table(title=f"{number} · usage lines and their events")
        for column in ("#", "Metric", "Tier", "Events on line", "Events found"):
            table.add_column(column, justify="right" if column.startswith("Events") else "left")
        for line in summaries:
            table.add_row(
                str(line["line_number"]), line["metric"] or "", line["tier_name"] or "",
                "" if line["event_count"] is None else f"{line['event_count']:,}", f"{line['events_found']:,}",
            )
        console.print(table)
        lines_of: dict[tuple[str, str], list[int]] = {}
        first: dict[tuple[str, str], Any] = {}
        for event in found:
            key = (event.transaction_id, event.metric)
            lines_of.setdefault(key, []).append(event.line_number)
            first.setdefault(key, event)
        # plain aligned text: an invoice can have millions of events, more than a rich table can lay out
        rows = [("Lines", "Metric", "Transaction", "Request time (UTC)", "Credential", "Value", "Trial")]
        for key, event in first.items():
            rows.append((
                ",".join(str(line) for line in lines_of[key]), event.metric, event.transaction_id,
                event.request_time.isoformat(sep=" "), event.credential_name or "",
                "" if event.value is None else f"{event.value.normalize():f}", "yes" if event.is_trial else "",
            ))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        sys.stdout.write(f"{len(first):,} event(s) by metric; a billable event feeds every tier line of its metric\n")
        for row in rows:
            cells = [cell.rjust(width) if column == 5 else cell.ljust(width)
                     for column, (cell, width) in enumerate(zip(row, widths, strict=True))]
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
    for line in summaries:
        if line["matches"] is False:
            errors.print(
                f"meterhouse: warning: line {line['line_number']} was rated from {line['event_count']:,} event(s);"
                f" lineage finds {line['events_found']:,} (events or catalog changed since the invoice was issued)",
                highlight=False, soft_wrap=True, markup=False,
            )


@app.command()
@fails_cleanly
def void(
    number: Annotated[str, typer.Argument(help="Invoice number, e.g. MH-2026-000001.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the invoice is void (required; kept with it).")],
    data_dir: DataDir = None,
    as_of: AsOf = None,
) -> None:
    """Void an issued invoice: it keeps its number and documents, its status becomes void."""
    from dagster_project import warehouse
    from dagster_project.invoicing.void import void_invoice

    if not reason.strip():
        raise UsageError("--reason must not be empty")
    root = settings.data_dir(data_dir)
    if not warehouse.warehouse_path(root).exists():
        raise RuntimeError(f"{warehouse.warehouse_path(root)}: no warehouse yet; run `meterhouse bill --period ...` first")
    with warehouse.connect(root) as connection:
        voided = void_invoice(connection, number, reason, settings.as_of(as_of))
    console.print(f"{voided.invoice_number}: void ({voided.void_reason}); its documents are unchanged", markup=False)


@app.command()
@fails_cleanly
def payment(
    number: Annotated[str, typer.Argument(help="Invoice number of an `external` product.")],
    status: Annotated[str, typer.Option("--status", help="paid or failed.")],
    reference: Annotated[str | None, typer.Option("--reference", help="Your payment reference.")] = None,
    paid_at: Annotated[str | None, typer.Option("--paid-at", help="When it was paid (RFC 3339).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Record a payment status update for an invoice paid outside Meterhouse."""
    from dagster_project import warehouse
    from dagster_project.payments.external import record_external_payment

    if status not in ("paid", "failed"):
        raise UsageError(f"--status {status!r}: expected paid or failed")
    with warehouse.connect(settings.data_dir(data_dir)) as connection:
        result = record_external_payment(connection, number, status, reference=reference, paid_at=paid_at)
    console.print(f"{result['invoice_number']}: payment {result['payment_status']}")


@app.command()
@fails_cleanly
def ui(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option("--port")] = 3000,
) -> None:
    """Start the Dagster UI on the project."""
    import subprocess

    from dagster_project.lib.event_log import write_instance_config

    root = settings.data_dir(data_dir)
    bin_dir = Path(sys.executable).parent
    environment = {
        **os.environ, settings.DATA_DIR_ENV: str(root), "DAGSTER_HOME": str(root / ".dagster"),
        # dagster-dbt looks for `dbt` on PATH when `dagster dev` loads the project; .venv/bin need not be there
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
    }
    write_instance_config(root / ".dagster")
    executable = bin_dir / "dagster"
    raise typer.Exit(
        subprocess.call(
            [str(executable), "dev", "-m", "dagster_project.definitions", "-p", str(port)], env=environment
        )
    )


@app.command()
@fails_cleanly
def bench(
    sizes: Annotated[str, typer.Option("--sizes", help="Comma-separated event counts.")] = "1000,1000000",
    repeats: Annotated[int, typer.Option("--repeats", min=1)] = 3,
    cache: Annotated[Path, typer.Option("--cache", help="Where data sets and runs are kept.")] = Path("data/bench"),
) -> None:
    """Time `bill` against a bare DuckDB scan of the same files (see docs/performance.md)."""
    from dagster_project.bench.run import run_bench

    try:
        counts = [int(part.replace("_", "")) for part in sizes.split(",") if part.strip()]
    except ValueError as error:
        raise UsageError(f"--sizes {sizes!r}: expected numbers like 1000,1000000") from error
    run_bench(counts, repeats, cache)


# finance lookups, price simulation and the dashboard (dagster_project/reporting/cli.py)
from dagster_project.reporting.cli import register as _register_reporting  # noqa: E402

_register_reporting(app)


if __name__ == "__main__":
    app()
