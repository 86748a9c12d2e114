"""Store outages caused for real (kill -9 of a store, of the MCP server) under a concurrent MCP load, and what
the agent saw: the fault tests (`tests/faults/`, small) and the bench (`bench/faults.py`, full size) share it."""
