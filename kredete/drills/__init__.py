"""Operator workflows on real servers: audited backups and restores, the disaster-recovery drills, and fault
drills (kill -9 under load) with the numbers they leave behind."""
