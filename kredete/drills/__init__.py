"""Operator workflows on real servers: audited backups and restores, and the disaster-recovery drills."""
