"""``meterhouse quota``, ``preview``, ``simulate`` and ``dashboard``: registered on the main app.

quota and preview read the published snapshot only, so they answer in well under a second and
while a billing run holds the warehouse.
"""

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table


def register(app: typer.Typer) -> None:
    from dagster_project import cli as main  # the app's shared options, error handling and console

    DataDir = main.DataDir  # noqa: N806 - a type alias
    At = Annotated[str | None, typer.Option("--at", help="Instant (RFC 3339 or YYYY-MM-DD); default: the last run's clock.")]  # noqa: N806
    AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]  # noqa: N806

    def _at(text: str | None) -> datetime | None:
        return None if text is None else main._instant(text, "--at")

    def _money(value, currency: str) -> str:
        from dagster_project.lib.money import format_money

        return "" if value is None else format_money(value, currency)

    def _number(value) -> str:
        return "" if value is None else f"{value.normalize():,f}"

    def _dump(document) -> None:
        sys.stdout.write(json.dumps(document, default=main._json_default, indent=2) + "\n")

    @app.command()
    @main.fails_cleanly
    def quota(
        subscription: Annotated[str, typer.Argument(help="Subscription id.")],
        at: At = None,
        as_json: AsJson = False,
        data_dir: DataDir = None,
    ) -> None:
        """Consumed quantity and what is left per metric and tier, and the amount so far of the open period.

        A dry run of the period's invoice, as of the last billing run (read from its snapshot).
        """
        from dagster_project import settings
        from dagster_project.reporting.lookups import quota as lookup

        answer = lookup(settings.data_dir(data_dir), subscription, _at(at))
        if as_json:
            _dump(answer)
            return
        currency = answer["currency"]
        table = Table(title=(
            f"{subscription} · {answer['product_name']} · {answer['period_start']:%Y-%m-%d %H:%M} → "
            f"{answer['period_end']:%Y-%m-%d %H:%M} ({answer['status']})"
        ))
        for column in ("Metric", "Tier", "Range", "Consumed", "Remaining", "Amount"):
            table.add_column(column, justify="left" if column in ("Metric", "Tier", "Range") else "right")
        for fee in answer["fees"]:
            table.add_row(fee["kind"], "", "", "", "", _money(fee["amount"], currency))
        for metric in answer["metrics"]:
            for tier in metric["tiers"]:
                upper = "∞" if tier["upper_bound"] is None else _number(tier["upper_bound"])
                table.add_row(
                    metric["metric"], ("▶ " if tier["current"] else "  ") + tier["tier"],
                    f"{_number(tier['lower_bound'])}–{upper}", _number(tier["consumed"]),
                    "∞" if tier["remaining"] is None and tier["upper_bound"] is None else _number(tier["remaining"]),
                    _money(tier["amount"], currency),
                )
            if not metric["tiers"]:
                table.add_row(metric["metric"], "", "", _number(metric["quantity"]), "", _money(metric["amount"], currency))
        main.console.print(table)
        main.console.print(
            f"Amount so far: {_money(answer['amount_so_far'], currency)}   data as of {answer['data_as_of']:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )
        for metric in answer["metrics"]:
            if metric["projected_quantity_linear"] is not None:
                main.console.print(
                    f"{metric['metric']}: projected at period end {metric['projected_quantity_linear']:,.2f} (linear),"
                    f" {metric['projected_quantity_recent']:,.2f} (recent rate)", highlight=False,
                )

    @app.command()
    @main.fails_cleanly
    def preview(
        subscription: Annotated[str, typer.Argument(help="Subscription id.")],
        at: At = None,
        html: Annotated[Path | None, typer.Option("--html", help="Also write the would-be invoice document here.")] = None,
        as_json: AsJson = False,
        data_dir: DataDir = None,
    ) -> None:
        """The would-be invoice of the open period: its lines as rated by the last billing run."""
        from dagster_project import settings
        from dagster_project.reporting.lookups import preview as lookup
        from dagster_project.reporting.lookups import render_preview_html

        root = settings.data_dir(data_dir)
        answer = lookup(root, subscription, _at(at))
        draft = answer["draft"]
        if html is not None:
            html.write_text(render_preview_html(root, answer), encoding="utf-8")
        if as_json:
            _dump({**draft, "lines": answer["lines"], "data_as_of": answer["data_as_of"]})
            return
        table = Table(title=(
            f"PREVIEW · {subscription} · {draft['period_start']:%Y-%m-%d} → {draft['period_end']:%Y-%m-%d}"
            f" · {draft['ledger_status']}"
        ))
        for column in ("#", "Kind", "Metric", "Tier", "Quantity", "Unit rate", "Amount"):
            table.add_column(column, justify="right" if column in ("Quantity", "Unit rate", "Amount") else "left")
        for line in answer["lines"]:
            table.add_row(
                str(line["line_number"]), line["kind"], line["metric"] or line["description"] or "",
                line["tier_name"] or "", _number(line["quantity"]), _number(line["unit_rate"]),
                _money(line["amount"], draft["currency"]),
            )
        main.console.print(table)
        main.console.print(
            f"Total so far: {_money(draft['total'], draft['currency'])} (not issued; usage up to"
            f" {answer['data_as_of']:%Y-%m-%d %H:%M} UTC)", highlight=False,
        )
        if html is not None:
            main.console.print(f"wrote {html}", highlight=False)

    @app.command()
    @main.fails_cleanly
    def simulate(
        catalog: Annotated[Path, typer.Option("--catalog", help="Directory of the catalog to try (*.yaml).")],
        from_period: Annotated[str, typer.Option("--from", help="First billing month, e.g. 2026-09.")],
        to_period: Annotated[str, typer.Option("--to", help="Last billing month, inclusive.")],
        wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for a billing run to finish.")] = 30.0,
        as_json: AsJson = False,
        data_dir: DataDir = None,
    ) -> None:
        """Re-rate history under another catalog: revenue and margin per customer and product, old vs new.

        Issued invoices and the warehouse are not touched.
        """
        from dagster_project import settings
        from dagster_project.reporting.simulate import simulate as run

        try:
            result = run(settings.data_dir(data_dir), catalog.resolve(), from_period, to_period, wait_seconds=wait)
        except ValueError as error:
            if "expected YYYY-MM" in str(error) or "--to" in str(error):
                raise main.UsageError(str(error)) from error
            raise
        document = result.as_dict()
        if as_json:
            _dump(document)
            return
        table = Table(title=f"Price simulation {from_period}..{to_period}: current catalog vs {catalog}")
        for column in ("Organization", "Product", "Cur.", "Revenue now", "Revenue new", "Difference", "Diff %",
                       "Margin now (USD)", "Margin new (USD)"):
            table.add_column(column, justify="left" if column in ("Organization", "Product", "Cur.") else "right")
        for row in result.rows:
            currency = row["currency"]
            pct = row["revenue_difference_pct"]
            table.add_row(
                row["organization_name"] or row["organization_id"], row["product_id"], currency,
                _money(row["old_revenue"], currency), _money(row["new_revenue"], currency),
                _money(row["revenue_difference"], currency), "" if pct is None else f"{pct * 100:.1f} %",
                _money(row["old_margin_usd"], "USD"), _money(row["new_margin_usd"], "USD"),
            )
        main.console.print(table)
        totals = document["totals"]
        main.console.print(
            f"Revenue {_money(totals['old_revenue_usd'], 'USD')} → {_money(totals['new_revenue_usd'], 'USD')}"
            f" ({_money(totals['revenue_difference_usd'], 'USD')}); margin {_money(totals['old_margin_usd'], 'USD')}"
            f" → {_money(totals['new_margin_usd'], 'USD')}. Page: {result.dashboard}", highlight=False,
        )

    @app.command()
    @main.fails_cleanly
    def dashboard(data_dir: DataDir = None) -> None:
        """Rewrite the finance dashboard from the last published snapshot and print its path."""
        from dagster_project import settings
        from dagster_project.reporting.dashboard import write_dashboard

        result = write_dashboard(settings.data_dir(data_dir))
        main.console.print(str(result.path), highlight=False, soft_wrap=True)
