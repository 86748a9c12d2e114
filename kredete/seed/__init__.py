"""Deterministic synthetic data: people (`people.py`, shared by every store's seeder) and the payments
database (`payments.py`). The same seed always gives the same data."""
