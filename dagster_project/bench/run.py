"""`meterhouse bench` / `make bench`: the billing run against a bare DuckDB scan, side by side.

For each size the data set is generated once and cached under ``<cache>/src-<n>/`` (a catalog of
the tutorial's two products with ``max(5, n // 2000)`` subscriptions, so 20 M events spread over
10 K subscriptions; Zipf-skewed usage, 0.1 % bad lines, 0.1 % duplicates). Then, alternating and
``repeats`` times each:

* **pipeline**: ``meterhouse bill --period 2026-10`` in a fresh data dir whose landing files are
  hard links to the cache (no copy), as a subprocess: wall time from CLI start to the command's exit
  (finance marts, snapshot and dashboard included), and, in the note, to the last invoice document
  written (the end point of the 1,000-event target); the peak RSS of the whole process tree
  (Dagster with dbt inside it, PDF workers), sampled every 50 ms;
* **baseline**: a fresh Python running DuckDB's ``read_json`` over the same files and a group-by
  subscriber and product (count, sum of tokens and cost): what the data costs to scan at all.

Up to ``PANDAS_MAX_EVENTS``, a third row: **pandas**, the straightforward analyst's version of the
same rating (json.loads per line, drop bad lines and duplicate ids, attribute by subscriber and
product, graduated tiers); its usage amounts are checked against the warehouse's invoices, so the
benchmark also proves the two agree.

At the largest size it also measures **incremental** loading: one more day (n / 30 events) into
the warehouse the pipeline left vs into an empty one (ingest and the checkpoint when the
warehouse closes: deduplication against history must not rescan it), and then rating it: the
``meterhouse bill`` of that day's period in each (dbt's rating, which must not rescan the history
either, and the rest of the run; nothing is issued, the period is open). Results print as a table
and go to ``<cache>/results.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psutil
import yaml

from dagster_project import settings

PERIOD = "2026-10"
START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = "2026-11-02T00:00:00Z"
# the incremental measurement's day is 1 November: billed as the open November period
NEXT_PERIOD, NEXT_AS_OF = "2026-11", "2026-11-02T12:00:00Z"
PANDAS_MAX_EVENTS = 1_000_000
EVENTS_PER_SUBSCRIPTION = 2_000
BAD_FRACTION = DUPLICATE_FRACTION = 0.001
SEED = 11

BASELINE_SQL = """
select subscriber_id, product_name, count(*) as events, sum(input_tokens + output_tokens) as tokens,
       sum(total_cost) as cost
from read_json(?, format = 'newline_delimited', ignore_errors = true, maximum_object_size = 16777216,
               columns = {subscriber: 'struct(id varchar)', productName: 'varchar', inputTokenCount: 'bigint',
                          outputTokenCount: 'bigint', totalCost: 'decimal(18, 10)'})
    as events(subscriber_id, product_name, input_tokens, output_tokens, total_cost)
group by all
"""


@dataclass
class Measurement:
    label: str
    events: int
    walls: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    note: str = ""
    # pipeline only: seconds from CLI start until the last invoice document was written
    invoices_written: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


def bench_catalog(subscriptions: int) -> dict:
    """The tutorial's two products, invoiced only (no card on file), with ``subscriptions`` customers."""
    tutorial = yaml.safe_load((settings.EXAMPLES_DIR / "tutorial" / "catalog" / "tutorial.yaml").read_text())
    products = tutorial["products"]
    for product in products:
        product["payment"] = "invoice_only"
    catalog = {"products": products, "organizations": [], "subscribers": [], "subscriptions": []}
    for number in range(subscriptions):
        organization = f"org-{number // 4:05d}"  # four subscribers per organization
        if number % 4 == 0:
            catalog["organizations"].append({"id": organization, "name": f"Organization {number // 4}"})
        subscriber = f"cust-{number:05d}"
        catalog["subscribers"].append({
            "id": subscriber, "email": f"billing+{number}@customer.example", "organization": organization,
        })
        catalog["subscriptions"].append({
            "id": f"sub-{number:05d}", "subscriber": subscriber, "product": products[number % 2]["id"],
            "start": "2026-09-01T00:00:00Z",
        })
    return catalog


def prepare_source(cache: Path, events: int) -> tuple[Path, float | None]:
    """The cached data set for ``events``; returns its dir and the generate rate when made now."""
    from contracts.catalog import load_catalog
    from dagster_project.generate import generate_events

    source = cache / f"src-{events}"
    done = source / ".complete"
    if done.exists():
        return source, None
    shutil.rmtree(source, ignore_errors=True)
    (source / "catalog").mkdir(parents=True)
    catalog_data = bench_catalog(max(5, events // EVENTS_PER_SUBSCRIPTION))
    (source / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(catalog_data, sort_keys=False))
    report = generate_events(
        load_catalog(source / "catalog"), source / "landing", events, START, END, seed=SEED,
        bad_fraction=BAD_FRACTION, duplicate_fraction=DUPLICATE_FRACTION, progress=sys.stderr.isatty(),
    )
    done.write_text(json.dumps({"lines": report.lines_written, "seconds": report.seconds}))
    return source, report.lines_written / report.seconds


def _linked_copy(source: Path, target: Path) -> None:
    """A data dir sharing the cached files: hard links, so a 3 GB data set costs no copy."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "catalog", target / "catalog")
    shutil.copytree(source / "landing", target / "landing", copy_function=os.link)


def _run_measured(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the process tree; raises when the command fails."""
    # output to a file, not a pipe: nobody reads a pipe while we sample, and a full one blocks the run
    with tempfile.TemporaryFile() as output_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=output_file, stderr=subprocess.STDOUT)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - started
        output_file.seek(0)
        output = output_file.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-2000:]}")
    return wall, peak / 1e6


def run_pipeline(source: Path, work: Path) -> tuple[float, float, float | None]:
    """Wall seconds to the command's exit, peak RSS (MB), and seconds to the last invoice
    document written (None when the run issued none)."""
    _linked_copy(source, work)
    env = {**os.environ, settings.DATA_DIR_ENV: str(work)}
    env.pop("STRIPE_API_KEY", None)
    meterhouse = str(Path(sys.executable).with_name("meterhouse"))
    started_at = time.time()
    wall, rss = _run_measured([meterhouse, "bill", "--period", PERIOD, "--as-of", AS_OF, "--data-dir", str(work)], env)
    return wall, rss, documents_written_after(work / "invoices", started_at)


def documents_written_after(directory: Path, started_at: float) -> float | None:
    """Seconds from ``started_at`` (epoch) to the newest file under ``directory``: when the run
    had written its invoices (HTML and PDF), the end point of the 1,000-event target."""
    written = [path.stat().st_mtime for path in directory.rglob("*") if path.is_file()]
    return max(written) - started_at if written else None


def run_baseline(source: Path) -> tuple[float, float]:
    glob = str(source / "landing" / "events" / "**" / "*.jsonl")
    script = (
        "import duckdb, sys\n"
        "connection = duckdb.connect(config={'autoinstall_known_extensions': False})\n"
        f"rows = connection.execute({BASELINE_SQL!r}, [sys.argv[1]]).fetchall()\n"
        "assert rows\n"
    )
    return _run_measured([sys.executable, "-c", script, glob])


def run_pandas(source: Path, work: Path) -> tuple[float, float, str]:
    """The analyst's version, in a fresh interpreter; its amounts are compared with the warehouse's."""
    command = [sys.executable, "-m", "dagster_project.bench.pandas_reference", str(source)]
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    result = json.loads(output)
    agreement = _compare_with_warehouse(work, {key: Decimal(value) for key, value in result["amounts"].items()})
    return wall, result["peak_rss_mb"], agreement


def _compare_with_warehouse(work: Path, amounts: dict[str, Decimal]) -> str:
    import duckdb

    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "select i.subscription_id, sum(l.amount) from marts.invoice_lines as l"
            " join marts.invoices as i using (invoice_number)"
            " where l.kind = 'usage' and i.status = 'issued' group by 1"
        ).fetchall()
    warehouse = {subscription: amount for subscription, amount in rows}
    differing = sorted(key for key in amounts.keys() | warehouse.keys()
                       if amounts.get(key, Decimal(0)) != warehouse.get(key, Decimal(0)))
    if differing:
        return f"{len(differing)} subscriptions differ, e.g. {differing[:3]}"
    return f"usage amounts equal for {len(warehouse)} subscriptions"


def run_incremental(source: Path, cache: Path, warm: Path) -> dict:
    """One more day into the warm warehouse vs into an empty one (ingest only)."""
    from contracts.catalog import load_catalog
    from dagster_project.generate import generate_events

    events = int(source.name.removeprefix("src-"))
    day = cache / f"day-{events}"
    if not (day / ".complete").exists():
        shutil.rmtree(day, ignore_errors=True)
        generate_events(load_catalog(source / "catalog"), day / "landing", max(1, events // 30),
                        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), seed=SEED + 1)
        (day / ".complete").touch()
    results = {}
    empty = cache / "work-empty"
    shutil.rmtree(empty, ignore_errors=True)
    shutil.copytree(source / "catalog", empty / "catalog")
    for label, target in (("into empty", empty), ("into warm", warm)):
        destination = target / "landing" / "events" / "next-day"
        shutil.copytree(day / "landing" / "events", destination, copy_function=os.link)
        results[label] = _ingest_seconds(target)
        results[f"rated {label}"] = _bill_seconds(target)
    results["ratio"] = results["into warm"] / results["into empty"]
    results["rating ratio"] = results["rated into warm"] / results["rated into empty"]
    results["rows_before"] = events
    return results


def _bill_seconds(data_dir: Path) -> float:
    """Wall seconds of ``meterhouse bill`` for the incremental day's period, its events loaded."""
    env = {**os.environ, settings.DATA_DIR_ENV: str(data_dir)}
    env.pop("STRIPE_API_KEY", None)
    meterhouse = str(Path(sys.executable).with_name("meterhouse"))
    wall, _ = _run_measured([meterhouse, "bill", "--period", NEXT_PERIOD, "--as-of", NEXT_AS_OF,
                             "--data-dir", str(data_dir)], env)
    return wall


def _ingest_seconds(data_dir: Path) -> float:
    """Seconds to load the new files and close the warehouse: the close is DuckDB's checkpoint,
    which compresses and writes what the load appended (it once also rewrote the primary-key
    index of ``raw.events``, and so grew with history)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dagster_project import settings, warehouse\n"
        "from dagster_project.ingest.loader import load_new_files\n"
        "root = Path(sys.argv[1])\n"
        "started = time.perf_counter()\n"
        "with warehouse.connect(root) as connection:\n"
        f"    load_new_files(connection, root, settings.parse_instant({AS_OF!r}))\n"
        "    loaded = time.perf_counter() - started\n"
        "print(loaded, time.perf_counter() - started)\n"
    )
    output = subprocess.run([sys.executable, "-c", script, str(data_dir)], check=True, capture_output=True, text=True)
    return float(output.stdout.strip().splitlines()[-1].split()[-1])


def run_bench(sizes: list[int], repeats: int, cache: Path, incremental: bool = True) -> dict:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=max(Console(stderr=True).width, 150))
    cache.mkdir(parents=True, exist_ok=True)
    rows: list[Measurement] = []
    generate_rates: dict[int, float] = {}
    incremental_result = None
    for events in sizes:
        with console.status(f"{events:,} events: generating (cached after the first time)…"):
            source, rate = prepare_source(cache, events)
        if rate:
            generate_rates[events] = rate
        work = cache / f"work-{events}"
        pipeline, baseline = Measurement("meterhouse bill", events), Measurement("DuckDB read_json + group by", events)
        for attempt in range(1, repeats + 1):
            with console.status(f"{events:,} events: run {attempt}/{repeats} of the baseline and the pipeline…"):
                wall, rss = run_baseline(source)
                baseline.walls.append(wall)
                baseline.peak_rss_mb.append(rss)
                wall, rss, invoices_at = run_pipeline(source, work)
                pipeline.walls.append(wall)
                pipeline.peak_rss_mb.append(rss)
                if invoices_at is not None:
                    pipeline.invoices_written.append(invoices_at)
        if pipeline.invoices_written:
            pipeline.note = (f"invoices written at {statistics.median(pipeline.invoices_written):.2f} s"
                             f" ({min(pipeline.invoices_written):.2f}–{max(pipeline.invoices_written):.2f})")
        rows += [baseline, pipeline]
        if events <= PANDAS_MAX_EVENTS:
            with console.status(f"{events:,} events: pandas reference…"):
                wall, rss, agreement = run_pandas(source, work)
            rows.append(Measurement("pandas (analyst's script)", events, [wall], [rss], note=agreement))
        if incremental and events == max(sizes):
            with console.status(f"{events:,} events: one more day, into the warm and an empty warehouse…"):
                incremental_result = run_incremental(source, cache, work)

    table = Table(title=f"meterhouse bench ({os.cpu_count()} cores, {repeats} runs each, alternating)")
    for column in ("events", "what", "wall s median", "min–max", "events/s", "peak RSS MB", "× baseline", "note"):
        table.add_column(column, justify="left" if column in ("what", "note") else "right")
    baselines = {row.events: row.median for row in rows if row.label.startswith("DuckDB")}
    for row in rows:
        table.add_row(
            f"{row.events:,}", row.label, f"{row.median:.2f}", f"{min(row.walls):.2f}–{max(row.walls):.2f}",
            f"{row.events / row.median:,.0f}", f"{max(row.peak_rss_mb):,.0f}",
            f"{row.median / baselines[row.events]:.1f}", row.note,
        )
    console.print(table)
    if generate_rates:
        console.print("generate: " + ", ".join(f"{n:,} events at {r:,.0f} lines/s" for n, r in generate_rates.items()))
    if incremental_result:
        console.print(
            f"incremental: one more day into {incremental_result['rows_before']:,} events took"
            f" {incremental_result['into warm']:.2f} s vs {incremental_result['into empty']:.2f} s into an empty"
            f" warehouse ({incremental_result['ratio']:.2f}×); billing it afterwards"
            f" {incremental_result['rated into warm']:.2f} s vs {incremental_result['rated into empty']:.2f} s"
            f" ({incremental_result['rating ratio']:.2f}×)"
        )
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "rows": [{**asdict(row), "median": row.median} for row in rows],
        "generate_lines_per_second": generate_rates, "incremental": incremental_result,
    }
    (cache / "results.json").write_text(json.dumps(results, indent=2))
    return results
