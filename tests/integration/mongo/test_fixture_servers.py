"""The session fixture of this package starts FerretDB and the PostgreSQL it keeps its data in (through
session_stack, so a session that started them stops them: see tests/integration/test_no_orphans.py)."""

from __future__ import annotations

from pymongo import MongoClient


def test_mongo_url_serves(mongo_url):
    with MongoClient(mongo_url, serverSelectionTimeoutMS=3000) as client:
        assert client.admin.command("ping")["ok"] == 1.0
