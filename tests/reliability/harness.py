"""A real `meterhouse bill` in a subprocess, killed and rerun, compared with an uninterrupted run.

One data dir per run: the tutorial catalog with hostile customer strings (HTML/JS, quotes),
generated events plus a hand-written file of edge cases (period boundaries +-1 us, offsets,
a DST change, far past and future, hostile model names), Stripe on a localstripe server
(one customer with a good card, one declined) and e-mail to a capturing SMTP server.

The reference run is made once per session (``reference()``) and shared by the reliability
and security suites: the kill -9 scenarios compare against it, the security tests read its
documents, e-mails and logs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import duckdb
import yaml
from aiosmtpd.controller import Controller

from tests.conftest import REPO_ROOT
from tests.payments.builders import flush_localstripe, free_port, localstripe

PERIOD = "2026-10"
AS_OF = "2026-11-02T00:00:00Z"
# distinctive: the secrets test greps every log, metadata and file for it
STRIPE_KEY = "sk_test_RELIABILITY_canary_5eb1d2c47a9f"
METERHOUSE = Path(sys.executable).parent / "meterhouse"
BILL_TIMEOUT = 900

XSS = {
    "product": 'DocSum Summaries <script>window.__pwned="product"</script>',
    "research": "DocSum \"Deep\" Research <img src=x onerror=\"window.__pwned='img'\">",
    "metric": "Reports ('deep'); drop table raw.events; -- </td><script>document.title='pwned'</script>",
    "tier": "First 1,000 <b onmouseover=alert(1)>'q'</b>",
    "organization": "Acme </title><script>alert('org')</script>",
    "subscriber": "Acme Labs <script>window.__pwned='subscriber'</script>",
    "subscription": 'Acme Labs "research" <iframe src="javascript:window.__pwned=1"></iframe>',
    "credential": "labs-key'\"<svg onload=alert(1)>",
    "model": "gpt-4o-mini<script>window.__pwned='model'</script>",
    "filter": "o3' or '1'='1",
}


# -- catalog and events --------------------------------------------------------------------

def hostile_catalog() -> dict:
    """The tutorial catalog with customer-controlled strings replaced by hostile ones."""
    source = REPO_ROOT / "data" / "examples" / "tutorial" / "catalog" / "tutorial.yaml"
    catalog = yaml.safe_load(source.read_text(encoding="utf-8"))
    summaries, research = catalog["products"]
    summaries["name"] = XSS["product"]
    summaries["metrics"][0]["tiers"][0]["name"] = XSS["tier"]
    research["name"] = XSS["research"]
    research["metrics"][0]["name"] = XSS["metric"]
    research["metrics"][0]["filter"] = {"model": ["o3", XSS["filter"]]}
    catalog["organizations"][0]["name"] = XSS["organization"]
    for subscriber in catalog["subscribers"]:
        if subscriber["id"] == "acme-labs":
            subscriber["name"] = XSS["subscriber"]
    for subscription in catalog["subscriptions"]:
        if subscription["id"] == "acme-labs-research":
            subscription["name"] = XSS["subscription"]
            subscription["credentials"][0]["name"] = XSS["credential"]
            subscription["metadata"] = {"note": "<script>window.__pwned='metadata'</script>"}
    return catalog


def edge_events() -> list[dict]:
    """Hand-picked instants, each attributed by a credential; ``edge_expectations`` says where each lands."""
    def at(ident: str, moment: str, credential: str = "sk-acme-prod-1", **extra) -> dict:
        return {"transactionId": ident, "requestTime": moment, "provider": "openai", "model": "gpt-4o-mini",
                "totalCost": "0.0001", "subscriber": {"id": "acme-ap", "credential": {"value": credential}},
                **extra}
    return [
        at("edge-sep-last-us", "2026-09-30T23:59:59.999999Z"),
        at("edge-oct-first-us", "2026-10-01T00:00:00Z"),
        at("edge-oct-first-us-offset", "2026-10-01T02:00:00.000000+02:00"),
        at("edge-oct-last-us", "2026-10-31T23:59:59.999999Z"),
        at("edge-oct-last-us-offset", "2026-10-31T18:59:59.999999-05:00"),
        at("edge-nov-first-us", "2026-11-01T00:00:00Z"),
        at("edge-nov-first-us-offset", "2026-11-01T05:30:00+05:30"),
        # Europe/Berlin leaves summer time on 2026-10-25: 02:30 happens twice, an hour apart
        at("edge-dst-first-0230", "2026-10-25T02:30:00+02:00"),
        at("edge-dst-second-0230", "2026-10-25T02:30:00+01:00"),
        at("edge-far-past", "1901-01-01T00:00:00Z"),
        at("edge-far-future", "9999-12-31T23:59:59.999999Z"),
        at("edge-just-future", "2026-11-03T00:00:00.000001Z"),
        at("edge-hostile-model", "2026-10-15T12:00:00Z", credential="sk-acme-labs-1", model=XSS["model"],
           metadata={"html": "<script>window.__pwned='event'</script>", "quote": "'; drop table raw.events; --"}),
    ]


# where each edge event lands: (period_start of the usage period, or None when it is not billed)
EDGE_PERIODS = {
    "edge-sep-last-us": "2026-09-01", "edge-oct-first-us": "2026-10-01", "edge-oct-first-us-offset": "2026-10-01",
    "edge-oct-last-us": "2026-10-01", "edge-oct-last-us-offset": "2026-10-01", "edge-nov-first-us": "2026-11-01",
    "edge-nov-first-us-offset": "2026-11-01", "edge-dst-first-0230": "2026-10-01",
    "edge-dst-second-0230": "2026-10-01",
}
EDGE_REJECTED = {"edge-far-future", "edge-just-future"}


_TEMPLATE: Path | None = None


def template() -> Path:
    """Catalog + landing files, generated once per session and copied into every data dir."""
    global _TEMPLATE
    if _TEMPLATE is None:
        root = Path(tempfile.mkdtemp(prefix="mh-template-"))
        (root / "catalog").mkdir(parents=True)
        (root / "catalog" / "catalog.yaml").write_text(
            yaml.safe_dump(hostile_catalog(), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        generated = subprocess.run(
            [str(METERHOUSE), "generate", "--data-dir", str(root), "--events", "1500", "--start", "2026-10-01",
             "--end", "2026-11-01", "--seed", "11", "--bad-fraction", "0.01", "--duplicate-fraction", "0.01"],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300, env=_environment({}),
        )
        assert generated.returncode == 0, generated.stderr
        edge = root / "landing" / "events" / "edge" / "edge-cases.jsonl"
        edge.parent.mkdir(parents=True, exist_ok=True)
        edge.write_text("".join(json.dumps(body, ensure_ascii=False) + "\n" for body in edge_events()),
                        encoding="utf-8")
        atexit.register(shutil.rmtree, root, True)
        _TEMPLATE = root
    return _TEMPLATE


def new_data_dir(parent: Path, name: str) -> Path:
    root = parent / name
    shutil.copytree(template(), root)
    return root


# -- services ------------------------------------------------------------------------------

_STACK = contextlib.ExitStack()
_STRIPE: str | None = None


def stripe_base() -> str:
    """One localstripe per session (emptied before each run by ``prepare_stripe``)."""
    global _STRIPE
    if _STRIPE is None:
        _STRIPE = _STACK.enter_context(localstripe(Path(tempfile.mkdtemp(prefix="mh-localstripe-"))))
        atexit.register(_STACK.close)
    return _STRIPE


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.messages]


@contextlib.contextmanager
def smtp() -> Mailbox:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{port}"
    try:
        yield mailbox
    finally:
        controller.stop()


def _environment(extra: dict[str, str]) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("STRIPE_", "METERHOUSE_"))}
    # the edge-case file is 2 rejected lines in 13, on purpose: above the default 5 % gate
    environment.update({"METERHOUSE_AS_OF": AS_OF, "DAGSTER_TELEMETRY_DISABLED": "1",
                        "METERHOUSE_MAX_REJECTED_FRACTION": "0.2", **extra})
    return environment


def prepare_stripe(root: Path) -> None:
    """Empty localstripe, then one customer with a card that pays and one whose card is declined."""
    base = stripe_base()
    flush_localstripe(base)
    seeded = subprocess.run(
        [sys.executable, "-m", "dagster_project.payments.demo", "--data-dir", str(root),
         "acme-labs=visa", "initech-finance=declined"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        env=_environment({"STRIPE_API_KEY": STRIPE_KEY, "STRIPE_API_BASE": base}),
    )
    assert seeded.returncode == 0, seeded.stderr


# -- runs ----------------------------------------------------------------------------------

@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def bill(root: Path, mailbox: Mailbox, fault: str | None = None, kill_after: float | None = None,
         extra: dict[str, str] | None = None, wait: float | None = None) -> Run:
    """``meterhouse bill`` in its own process group. ``fault``: the point it kills itself at;
    ``kill_after``: SIGKILL the whole group (the run and its dbt child) after that many seconds."""
    environment = _environment({
        "STRIPE_API_KEY": STRIPE_KEY, "STRIPE_API_BASE": stripe_base(), "METERHOUSE_SMTP_URL": mailbox.url,
        **({"METERHOUSE_FAULT_POINT": fault} if fault else {}), **(extra or {}),
    })
    command = [str(METERHOUSE), "bill", "--data-dir", str(root), "--period", PERIOD]
    if wait is not None:
        command += ["--wait", str(wait)]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                               env=environment, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=kill_after if kill_after is not None else BILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    wait_for_group(process.pid)
    return Run(process.returncode, stdout, stderr, time.monotonic() - started)


def wait_for_group(pgid: int, timeout: float = 300) -> None:
    """Wait until no process of the run's group is left (a dbt child outlives a killed parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


# -- what a run leaves behind --------------------------------------------------------------

SNAPSHOT_QUERIES = {
    # wall-clock columns (loaded_at, released_at, sent_at, load ids, Stripe ids) differ run to run
    "invoices": """select invoice_number, draft_key, subscription_id, period_start, period_end, issued_at, status,
                          held_reasons, subtotal, total, payment_status, document_sha256, pdf_sha256
                   from marts.invoices order by draft_key""",
    "invoice_lines": """select invoice_number, line_number, kind, metric, tier_name, quantity, unit_rate, amount,
                               event_count, period_start, period_end from marts.invoice_lines
                        order by invoice_number, line_number""",
    "sequences": "select * from billing.invoice_number_sequences order by all",
    "events": """select count(*), count(distinct transaction_id),
                        md5(string_agg(transaction_id || ':' || coalesce(payload_sha256, md5(attributes_json)), ','
                                       order by transaction_id)) from raw.events""",
    "rejected": "select source_file, line_number, reason from raw.rejected_events order by all",
    "duplicates": "select transaction_id, source_file, line_number from raw.duplicate_events order by all",
    "loaded_files": """select source_file, content_sha256, lines_read, accepted, duplicates, rejected
                       from raw.loaded_files order by all""",
    "usage": "select * from marts.usage_by_period order by all",
    "unbilled": "select transaction_id, reason, request_time, provider_cost_usd from marts.unbilled_usage order by all",
    "payments": "select invoice_number, attempt_number, state, decline_code from billing.payment_attempts order by all",
    "notifications": """select notification_key, type, invoice_number, recipient, subject, status, message_id
                        from billing.notifications order by notification_key""",
}


def snapshot(root: Path) -> dict:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as connection:
        state = {name: connection.execute(sql).fetchall() for name, sql in SNAPSHOT_QUERIES.items()}
    state["documents"] = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((root / "invoices").glob("*")) if not path.name.startswith(".")
    }
    return state


def leftover_temporary_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*.tmp"))


def payment_intents(invoice_number: str | None = None) -> list[dict]:
    import stripe

    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_base()}, max_network_retries=0)
    found = []
    for intent in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        data = intent.to_dict()
        number = (data.get("metadata") or {}).get("invoice_number")
        if invoice_number is None or number == invoice_number:
            found.append(data)
    return found


def intents_per_invoice() -> dict[str, int]:
    counts: dict[str, int] = {}
    for intent in payment_intents():
        number = (intent.get("metadata") or {}).get("invoice_number")
        counts[number] = counts.get(number, 0) + 1
    return counts


@dataclass
class Outcome:
    root: Path
    run: Run
    snapshot: dict
    intents: dict[str, int]
    message_ids: list[str]
    mailbox: Mailbox


_REFERENCE: Outcome | None = None


def reference() -> Outcome:
    """The uninterrupted run, once per session."""
    global _REFERENCE
    reuse = os.environ.get("METERHOUSE_REUSE_REFERENCE")  # debugging: a reference data dir left by a run
    if _REFERENCE is None and reuse:
        root = Path(reuse)
        _REFERENCE = Outcome(root, Run(0, "", "", 0.0), snapshot(root), {}, [], Mailbox())
    if _REFERENCE is None:
        parent = Path(tempfile.mkdtemp(prefix="mh-reference-"))
        atexit.register(shutil.rmtree, parent, True)
        root = new_data_dir(parent, "data")
        prepare_stripe(root)
        with smtp() as mailbox:
            run = bill(root, mailbox)
        assert run.returncode == 0, run.stderr
        _REFERENCE = Outcome(root, run, snapshot(root), intents_per_invoice(), mailbox.message_ids(), mailbox)
    return _REFERENCE


def killed_then_rerun(parent: Path, name: str, fault: str | None = None, kill_after: float | None = None) -> dict:
    """Kill a run at ``fault`` (or after ``kill_after`` s), rerun it, and report what each left."""
    root = new_data_dir(parent, name)
    prepare_stripe(root)
    with smtp() as mailbox:
        first = bill(root, mailbox, fault=fault, kill_after=kill_after)
        leftovers = leftover_temporary_files(root)
        second = bill(root, mailbox)
        return {
            "root": root, "first": first, "second": second, "leftover_tmp_after_kill": leftovers,
            "snapshot": snapshot(root), "intents": intents_per_invoice(), "message_ids": mailbox.message_ids(),
        }
