"""Fault tests: a store (or the MCP server) is killed for real under a small concurrent MCP load.

They run on the e2e dataset (built once per session; reused when the e2e suite built it) with private
processes for what they kill (`kredete.faults.processes`), never the session's shared servers.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E_DATASET


@pytest.fixture(scope="session")
def faults_dataset(stack):
    """(settings, environment of a server process) of the e2e dataset, built unless it exists."""
    from evals.harness import _run

    E2E_DATASET.prepare()
    _run(["db", "migrate"], E2E_DATASET.env)  # a dataset built by an older checkout: up to this one's schema
    return E2E_DATASET.settings(), E2E_DATASET.env
