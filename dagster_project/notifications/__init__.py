"""Customer notifications (the tutorial's Step 6): invoice, payment, subscription and quota e-mails."""
