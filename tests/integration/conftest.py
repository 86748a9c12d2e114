"""Fixtures of the S3 tests (test_objects, test_s3_*): the S3 servers, and `kredete s3 setup` applied once."""

from __future__ import annotations

import pytest

from config.settings import resolve


@pytest.fixture(scope="session")
def s3_settings(session_stack):
    """The S3 servers of the stack (primary, DR, cold tier, log receiver; started if needed, stopped at the
    end if this session started them)."""
    session_stack.need(["s3", "s3-dr"])
    return resolve()


@pytest.fixture(scope="session")
async def s3_ready(s3_settings):
    """`kredete s3 setup` applied (idempotent): principals, tiers, buckets, replication."""
    from stores.objects.setup import setup_all

    return await setup_all(s3_settings)
