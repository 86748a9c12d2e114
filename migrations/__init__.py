"""Reversible schema migrations of the payments database (alembic, raw SQL, expand/contract)."""
