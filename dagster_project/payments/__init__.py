"""Payments (SPEC §3.10): Stripe charges for ``stripe`` products, status updates for ``external`` ones."""
