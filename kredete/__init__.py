"""Kredete data tier: local stack, CLI and shared settings."""
