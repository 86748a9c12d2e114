"""Business services on top of the store adapters (one database transaction per business operation)."""
