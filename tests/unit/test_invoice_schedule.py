"""dagster_project.lib.invoice_schedule: which drafts a subscription has and the fixed fees on them
(SPEC §3.5, §3.6, §3.8; docs/architecture.md "catalog.subscription_periods")."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from contracts.catalog import Catalog
from dagster_project.lib.invoice_schedule import draft_rows, phases_of, subscription_period_rows


def dt(*parts: int) -> datetime:
    return datetime(*parts)


def product(product_id: str, **fields) -> dict:
    body = {
        "id": product_id,
        "name": product_id.title(),
        "currency": "USD",
        "recurring_charge": "199.00",
        "invoicing_period": {"every": 1, "unit": "month"},
        "billing_anchor": "calendar",
        "invoice_schedule": "in_arrears",
    }
    body.update(fields)
    return body


def catalog_with(products: list[dict], **subscription) -> Catalog:
    body = {"id": "sub-1", "subscriber": "user-1", "product": products[0]["id"], **subscription}
    return Catalog.model_validate(
        {
            "products": products,
            "organizations": [{"id": "org-1", "name": "Org"}],
            "subscribers": [{"id": "user-1", "organization": "org-1"}],
            "subscriptions": [body],
        }
    )


def drafts(catalog: Catalog, horizon: datetime) -> list[dict]:
    return draft_rows(catalog.subscriptions[0], catalog, horizon)


def summary(rows: list[dict]) -> list[tuple]:
    return [(r["product_id"], r["period_start"], r["period_end"], r["recurring_amount"], r["setup_amount"]) for r in rows]


# --- in arrears -----------------------------------------------------------------------------


def test_calendar_monthly_in_arrears_starting_mid_month():
    catalog = catalog_with([product("basic")], start="2026-10-11T00:00:00Z")
    rows = drafts(catalog, horizon=dt(2026, 12, 15))
    # October: active Oct 11 00:00 -> Nov 1 00:00 = 21 days of 31.
    # 199 * 21/31 = 4179/31 = 134.806451... -> 134.81
    # November and December are whole: 199.00 each. Horizon Dec 15 -> December's draft exists.
    assert summary(rows) == [
        ("basic", dt(2026, 10, 11), dt(2026, 11, 1), Decimal("134.81"), Decimal("0.00")),
        ("basic", dt(2026, 11, 1), dt(2026, 12, 1), Decimal("199.00"), Decimal("0.00")),
        ("basic", dt(2026, 12, 1), dt(2027, 1, 1), Decimal("199.00"), Decimal("0.00")),
    ]
    first = rows[0]
    # seconds used for the proration: 21 * 86400 = 1,814,400 of 31 * 86400 = 2,678,400
    assert first["recurring_billable_seconds"] == 1_814_400
    assert first["recurring_period_seconds"] == 2_678_400
    assert first["recurring_start"] == dt(2026, 10, 11)
    assert first["recurring_end"] == dt(2026, 11, 1)
    assert first["active_start"] == dt(2026, 10, 11) and first["active_end"] == dt(2026, 11, 1)
    assert first["due_at"] == dt(2026, 11, 1)  # no grace: due at period end
    assert first["currency"] == "USD" and first["minor_units"] == 2
    assert first["trial_end_at"] is None
    # the invoice says why the fee is not the full 199.00; whole months say nothing
    assert first["recurring_note"] == "prorated: 21 days of 31 days, active part of the period"
    assert rows[1]["recurring_note"] is None


def test_horizon_limits_drafts_to_periods_starting_before_it():
    catalog = catalog_with([product("basic")], start="2026-10-01T00:00:00Z")
    # horizon exactly at Nov 1: only October's period starts before it
    assert [r["period_start"] for r in drafts(catalog, dt(2026, 11, 1))] == [dt(2026, 10, 1)]
    # horizon one microsecond later: November starts before it too
    assert [r["period_start"] for r in drafts(catalog, dt(2026, 11, 1, 0, 0, 0, 1))] == [dt(2026, 10, 1), dt(2026, 11, 1)]


def test_subscription_period_rows_horizon_is_as_of_plus_one_day():
    catalog = catalog_with([product("basic")], start="2026-10-01T00:00:00Z")
    # as_of Oct 31 00:00 -> horizon Nov 1 00:00: only October
    assert len(subscription_period_rows(catalog, dt(2026, 10, 31))) == 1
    # as_of Oct 31 00:00:01 -> horizon Nov 1 00:00:01: November's draft appears
    assert len(subscription_period_rows(catalog, dt(2026, 10, 31, 0, 0, 1))) == 2


def test_ending_mid_month_closes_the_period_at_the_end_instant():
    catalog = catalog_with(
        [product("basic")], start="2026-09-01T00:00:00Z", end="2026-10-21T00:00:00Z"
    )
    rows = drafts(catalog, horizon=dt(2027, 6, 1))
    # September whole: 199.00. October: Oct 1 -> Oct 21 = 20 days of 31:
    # 199 * 20/31 = 3980/31 = 128.387... -> 128.39. Nothing after the end, however far the horizon.
    assert summary(rows) == [
        ("basic", dt(2026, 9, 1), dt(2026, 10, 1), Decimal("199.00"), Decimal("0.00")),
        ("basic", dt(2026, 10, 1), dt(2026, 10, 21), Decimal("128.39"), Decimal("0.00")),
    ]
    assert rows[1]["due_at"] == dt(2026, 10, 21)
    assert rows[1]["recurring_billable_seconds"] == 20 * 86_400
    assert rows[1]["recurring_period_seconds"] == 31 * 86_400


def test_setup_fee_on_first_in_arrears_draft_only():
    catalog = catalog_with([product("basic", setup_fee="49.995")], start="2026-10-01T00:00:00Z")
    rows = drafts(catalog, horizon=dt(2026, 11, 15))
    # setup 49.995 -> 4999.5 cents, 4999 odd -> 50.00 (half-even), only on the first draft
    assert [r["setup_amount"] for r in rows] == [Decimal("50.00"), Decimal("0.00")]


def test_plan_change_mid_month_closes_old_period_and_starts_new():
    catalog = catalog_with(
        [product("basic"), product("pro", recurring_charge="299.00")],
        start="2026-10-01T00:00:00Z",
        changes=[{"at": "2026-11-15T00:00:00Z", "product": "pro"}],
    )
    phases = phases_of(catalog.subscriptions[0], catalog)
    assert [(p.number, p.product.id, p.start, p.end) for p in phases] == [
        (1, "basic", dt(2026, 10, 1), dt(2026, 11, 15)),
        (2, "pro", dt(2026, 11, 15), None),
    ]
    rows = drafts(catalog, horizon=dt(2026, 12, 10))
    # November has 30 days. basic Nov 1 -> Nov 15 = 14 days: 199 * 14/30 = 2786/30 = 92.8666... -> 92.87
    # pro Nov 15 -> Dec 1 = 16 days: 299 * 16/30 = 4784/30 = 159.4666... -> 159.47
    assert summary(rows) == [
        ("basic", dt(2026, 10, 1), dt(2026, 11, 1), Decimal("199.00"), Decimal("0.00")),
        ("basic", dt(2026, 11, 1), dt(2026, 11, 15), Decimal("92.87"), Decimal("0.00")),
        ("pro", dt(2026, 11, 15), dt(2026, 12, 1), Decimal("159.47"), Decimal("0.00")),
        ("pro", dt(2026, 12, 1), dt(2027, 1, 1), Decimal("299.00"), Decimal("0.00")),
    ]
    assert [r["phase_number"] for r in rows] == [1, 1, 2, 2]
    assert rows[1]["recurring_billable_seconds"] == 14 * 86_400
    assert rows[2]["recurring_billable_seconds"] == 16 * 86_400
    assert rows[1]["recurring_period_seconds"] == rows[2]["recurring_period_seconds"] == 30 * 86_400
    assert rows[1]["due_at"] == dt(2026, 11, 15)  # the short period is invoiced at the change


def test_same_fee_plan_change_splits_fee_by_seconds():
    # 14/30 and 16/30 of November on a 199 product each: 92.87 + 106.13 (199*16/30 = 106.1333...)
    catalog = catalog_with(
        [product("basic"), product("basic-2")],
        start="2026-11-01T00:00:00Z",
        changes=[{"at": "2026-11-15T00:00:00Z", "product": "basic-2"}],
    )
    rows = drafts(catalog, horizon=dt(2026, 11, 20))
    assert [r["recurring_amount"] for r in rows] == [Decimal("92.87"), Decimal("106.13")]


# --- in advance -----------------------------------------------------------------------------


def test_in_advance_opening_draft_and_next_period_fee():
    catalog = catalog_with(
        [product("adv", recurring_charge="100.00", setup_fee="50.00", invoice_schedule="in_advance")],
        start="2026-10-11T00:00:00Z",
    )
    rows = drafts(catalog, horizon=dt(2026, 11, 20))
    # opening draft: empty usage period at the start, setup 50.00 + October's fee
    #   100 * 21/31 = 2100/31 = 67.7419... -> 67.74
    # the draft closing Oct 11 -> Nov 1 carries November's fee (100.00, Nov 1 -> Dec 1)
    # the draft closing Nov 1 -> Dec 1 carries December's fee (100.00)
    assert summary(rows) == [
        ("adv", dt(2026, 10, 11), dt(2026, 10, 11), Decimal("67.74"), Decimal("50.00")),
        ("adv", dt(2026, 10, 11), dt(2026, 11, 1), Decimal("100.00"), Decimal("0.00")),
        ("adv", dt(2026, 11, 1), dt(2026, 12, 1), Decimal("100.00"), Decimal("0.00")),
    ]
    assert (rows[0]["recurring_start"], rows[0]["recurring_end"]) == (dt(2026, 10, 11), dt(2026, 11, 1))
    assert rows[0]["due_at"] == dt(2026, 10, 11)
    assert (rows[1]["recurring_start"], rows[1]["recurring_end"]) == (dt(2026, 11, 1), dt(2026, 12, 1))
    assert (rows[2]["recurring_start"], rows[2]["recurring_end"]) == (dt(2026, 12, 1), dt(2027, 1, 1))


def test_in_advance_ending_mid_month():
    catalog = catalog_with(
        [product("adv", recurring_charge="100.00", invoice_schedule="in_advance")],
        start="2026-10-01T00:00:00Z",
        end="2026-11-15T00:00:00Z",
    )
    rows = drafts(catalog, horizon=dt(2027, 1, 1))
    # opening: October whole 100.00; the draft closing Oct -> Nov 1 carries Nov 1 -> Nov 15:
    #   100 * 14/30 = 46.666... -> 46.67; the final draft (Nov 1 -> Nov 15) carries nothing.
    assert summary(rows) == [
        ("adv", dt(2026, 10, 1), dt(2026, 10, 1), Decimal("100.00"), Decimal("0.00")),
        ("adv", dt(2026, 10, 1), dt(2026, 11, 1), Decimal("46.67"), Decimal("0.00")),
        ("adv", dt(2026, 11, 1), dt(2026, 11, 15), Decimal("0.00"), Decimal("0.00")),
    ]
    assert rows[2]["recurring_start"] is None


def test_in_arrears_to_in_advance_plan_change_opens_at_the_change():
    catalog = catalog_with(
        [product("basic"), product("adv", recurring_charge="300.00", invoice_schedule="in_advance")],
        start="2026-11-01T00:00:00Z",
        changes=[{"at": "2026-11-21T00:00:00Z", "product": "adv"}],
    )
    rows = drafts(catalog, horizon=dt(2026, 11, 25))
    # basic Nov 1 -> 21 in arrears: 199 * 20/30 = 132.666... -> 132.67
    # adv opening draft at Nov 21: Nov 21 -> Dec 1 = 10 days, 300 * 10/30 = 100.00; no setup (not the first draft)
    # adv draft Nov 21 -> Dec 1 carries December: 300.00
    assert summary(rows) == [
        ("basic", dt(2026, 11, 1), dt(2026, 11, 21), Decimal("132.67"), Decimal("0.00")),
        ("adv", dt(2026, 11, 21), dt(2026, 11, 21), Decimal("100.00"), Decimal("0.00")),
        ("adv", dt(2026, 11, 21), dt(2026, 12, 1), Decimal("300.00"), Decimal("0.00")),
    ]


# --- trial ----------------------------------------------------------------------------------


def test_free_trial_prorates_first_fee():
    catalog = catalog_with([product("basic", free_trial_days=10)], start="2026-10-01T00:00:00Z")
    rows = drafts(catalog, horizon=dt(2026, 11, 5))
    # trial Oct 1 -> Oct 11; billable Oct 11 -> Nov 1 = 21 days of 31: 199 * 21/31 = 134.81
    # November is after the trial: 199.00
    assert summary(rows) == [
        ("basic", dt(2026, 10, 1), dt(2026, 11, 1), Decimal("134.81"), Decimal("0.00")),
        ("basic", dt(2026, 11, 1), dt(2026, 12, 1), Decimal("199.00"), Decimal("0.00")),
    ]
    assert rows[0]["trial_end_at"] == dt(2026, 10, 11)
    assert rows[0]["recurring_billable_seconds"] == 21 * 86_400
    assert rows[0]["recurring_note"] == "prorated: 21 days of 31 days, after the free trial"
    # the usage period is still the whole of October: trial usage is shown at 0, not cut off
    assert rows[0]["active_start"] == dt(2026, 10, 1)


def test_free_trial_longer_than_a_period():
    catalog = catalog_with([product("basic", free_trial_days=45)], start="2026-10-01T00:00:00Z")
    rows = drafts(catalog, horizon=dt(2026, 11, 5))
    # trial Oct 1 + 45 days = Nov 15. October: 0 billable -> 0.00. November: Nov 15 -> Dec 1 = 16/30:
    # 199 * 16/30 = 3184/30 = 106.1333... -> 106.13
    assert [r["recurring_amount"] for r in rows] == [Decimal("0.00"), Decimal("106.13")]
    assert rows[0]["recurring_billable_seconds"] == 0
    assert rows[0]["recurring_note"] == "free trial"
    assert rows[1]["recurring_note"] == "prorated: 16 days of 30 days, after the free trial"


# --- minute periods, JPY, grace ----------------------------------------------------------------


def test_five_minute_periods_across_an_hour_boundary():
    catalog = catalog_with(
        [product("burst", recurring_charge="0.07", invoicing_period={"every": 5, "unit": "minute"})],
        start="2026-10-01T10:52:00Z",
    )
    rows = drafts(catalog, horizon=dt(2026, 10, 1, 11, 6))
    # 10:52 -> 10:55: 180 s of 300: 0.07 * 180/300 = 0.042 -> 0.04
    # 10:55 -> 11:00, 11:00 -> 11:05, 11:05 -> 11:10 (starts before the 11:06 horizon): 0.07 each
    assert summary(rows) == [
        ("burst", dt(2026, 10, 1, 10, 52), dt(2026, 10, 1, 10, 55), Decimal("0.04"), Decimal("0.00")),
        ("burst", dt(2026, 10, 1, 10, 55), dt(2026, 10, 1, 11, 0), Decimal("0.07"), Decimal("0.00")),
        ("burst", dt(2026, 10, 1, 11, 0), dt(2026, 10, 1, 11, 5), Decimal("0.07"), Decimal("0.00")),
        ("burst", dt(2026, 10, 1, 11, 5), dt(2026, 10, 1, 11, 10), Decimal("0.07"), Decimal("0.00")),
    ]
    assert rows[0]["recurring_billable_seconds"] == 180
    assert rows[0]["recurring_period_seconds"] == 300
    assert rows[0]["recurring_note"] == "prorated: 3 minutes of 5 minutes, active part of the period"


def test_five_minute_half_cent_rounds_to_even():
    # 0.05 * 45/300 = 0.0075 -> 0.75 cents: below the half -> 0.01 ; 0.05 * 135/300 = 0.0225 -> 2.25c -> 0.02
    # 0.01 * 150/300 = 0.005 exactly -> 0.5 cents, 0 is even -> 0.00
    catalog = catalog_with(
        [product("burst", recurring_charge="0.01", invoicing_period={"every": 5, "unit": "minute"})],
        start="2026-10-01T10:57:30Z",
    )
    rows = drafts(catalog, horizon=dt(2026, 10, 1, 10, 58))
    assert rows[0]["recurring_billable_seconds"] == 150
    assert rows[0]["recurring_amount"] == Decimal("0.00")


def test_jpy_prorated_fee_on_a_half_rounds_to_even():
    # November has 30 days; a start on Nov 16 is 15/30 = 1/2 of the period.
    # 1001 JPY / 2 = 500.5 -> 500 (even) ; 1003 JPY / 2 = 501.5 -> 502 (even)
    for fee, expected in (("1001", Decimal("500")), ("1003", Decimal("502"))):
        catalog = catalog_with([product("yen", currency="JPY", recurring_charge=fee)], start="2026-11-16T00:00:00Z")
        row = drafts(catalog, horizon=dt(2026, 11, 20))[0]
        assert row["recurring_amount"] == expected
        assert str(row["recurring_amount"]) == str(expected)  # no decimals for JPY
        assert row["currency"] == "JPY" and row["minor_units"] == 0
        assert row["setup_amount"] == Decimal("0")


def test_grace_period_shifts_due_at():
    catalog = catalog_with([product("basic", grace_period_hours=36)], start="2026-10-01T00:00:00Z")
    rows = drafts(catalog, horizon=dt(2026, 11, 5))
    # period ends Nov 1 00:00; + 36 h = Nov 2 12:00. The period itself is unchanged.
    assert rows[0]["period_end"] == dt(2026, 11, 1)
    assert rows[0]["due_at"] == dt(2026, 11, 1) + timedelta(hours=36) == dt(2026, 11, 2, 12)
    assert rows[1]["due_at"] == dt(2026, 12, 2, 12)


def test_anniversary_monthly_from_jan_31():
    catalog = catalog_with(
        [product("anniv", recurring_charge="30.00", billing_anchor="anniversary")],
        start="2028-01-31T00:00:00Z",
    )
    rows = drafts(catalog, horizon=dt(2028, 3, 1))
    # whole anniversary periods: Jan 31 -> Feb 29 (leap) -> Mar 31; each is a full period: 30.00
    assert summary(rows) == [
        ("anniv", dt(2028, 1, 31), dt(2028, 2, 29), Decimal("30.00"), Decimal("0.00")),
        ("anniv", dt(2028, 2, 29), dt(2028, 3, 31), Decimal("30.00"), Decimal("0.00")),
    ]


def test_in_advance_to_in_advance_plan_change():
    catalog = catalog_with(
        [
            product("adv", recurring_charge="100.00", invoice_schedule="in_advance"),
            product("adv-plus", recurring_charge="250.00", invoice_schedule="in_advance"),
        ],
        start="2026-10-01T00:00:00Z",
        changes=[{"at": "2026-11-15T00:00:00Z", "product": "adv-plus"}],
    )
    rows = drafts(catalog, horizon=dt(2026, 11, 20))
    # opening Oct 1: October on adv, 100.00
    # closing Oct -> Nov 1 carries Nov 1 -> Nov 15 on adv: 100 * 14/30 = 46.666... -> 46.67
    # closing Nov 1 -> Nov 15 (at the change) carries Nov 15 -> Dec 1 on adv-plus: 250 * 16/30 = 133.333... -> 133.33
    # adv-plus needs no opening draft (its first fee was billed in advance); its draft carries December 250.00
    assert summary(rows) == [
        ("adv", dt(2026, 10, 1), dt(2026, 10, 1), Decimal("100.00"), Decimal("0.00")),
        ("adv", dt(2026, 10, 1), dt(2026, 11, 1), Decimal("46.67"), Decimal("0.00")),
        ("adv", dt(2026, 11, 1), dt(2026, 11, 15), Decimal("133.33"), Decimal("0.00")),
        ("adv-plus", dt(2026, 11, 15), dt(2026, 12, 1), Decimal("250.00"), Decimal("0.00")),
    ]


def test_in_advance_with_trial():
    catalog = catalog_with(
        [product("adv", recurring_charge="310.00", invoice_schedule="in_advance", free_trial_days=10)],
        start="2026-10-01T00:00:00Z",
    )
    rows = drafts(catalog, horizon=dt(2026, 10, 5))
    # opening draft bills October after the trial: Oct 11 -> Nov 1 = 21 of 31 days, 310 * 21/31 = 210.00
    # the October draft bills November in full: 310.00
    assert [r["recurring_amount"] for r in rows] == [Decimal("210.00"), Decimal("310.00")]


def test_in_advance_fee_is_never_put_on_a_draft_of_another_currency(tmp_path):
    # A plan change from a USD in-advance product to a JPY in-advance product: the draft that
    # closes the USD period at the change would carry the JPY product's 3000 * 16/30 = 1600
    # fee. One subscription bills in one currency, so the catalog refuses the change and
    # names the field.
    import pytest

    from contracts.catalog import CatalogError, load_catalog

    (tmp_path / "c.yaml").write_text(
        """
products:
  - {id: adv-usd, name: Adv USD, currency: USD, recurring_charge: "100.00", invoice_schedule: in_advance}
  - {id: adv-jpy, name: Adv JPY, currency: JPY, recurring_charge: "3000", invoice_schedule: in_advance}
subscribers: [{id: s}]
subscriptions:
  - id: sub-1
    subscriber: s
    product: adv-usd
    start: 2026-10-01T00:00:00Z
    changes: [{at: 2026-11-15T00:00:00Z, product: adv-jpy}]
""",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert caught.value.problems[0].startswith("c.yaml: subscriptions[0].changes[0].product: 'adv-jpy' bills in JPY")
