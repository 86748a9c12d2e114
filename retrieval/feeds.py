"""Where each structured search index's documents come from, and how a row becomes one.

Postgres feeds read a keyset feed (`stores.postgres.keyset_feed`) after a high-water mark; Mongo feeds
scan a credit-store collection (`kredete search sync`) or follow its change events (`retrieval.changes`).
Each document carries its source's version, so re-reads are idempotent and a rebuild loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from retrieval.redactor import Redactor
from retrieval.structured_docs import (
    audit_doc,
    credit_report_index_doc,
    dispute_index_doc,
    transaction_doc,
    user_doc,
)
from stores.postgres import keyset_feed
from stores.postgres.keyset_feed import FeedTable
from stores.search.catalog import AUDIT_LOGS, CREDIT_REPORTS, DISPUTES, TRANSACTIONS, USERS
from stores.search.indexes import version_of

Row = dict[str, Any]


def _version_at(column: str) -> Callable[[Row], int]:
    return lambda row: version_of(row.get(column))


@dataclass(frozen=True)
class Feed:
    """One index's source: a Postgres feed table or a credit-store collection, and its converter."""

    kind: Literal["postgres", "mongo"]
    to_doc: Callable[[Row, Redactor], Row]
    id_field: str
    table: FeedTable | None = None
    collection: str | None = None
    #: The document's external version: the source's own change time, so a copy made during a rebuild
    #: never overwrites a newer write and a re-read row rewrites itself idempotently.
    version: Callable[[Row], int] = field(default=_version_at("updated_at"))


FEEDS: dict[str, Feed] = {
    TRANSACTIONS: Feed("postgres", transaction_doc, "transaction_id", table=keyset_feed.TRANSACTIONS),
    USERS: Feed("postgres", user_doc, "user_id", table=keyset_feed.USERS),
    AUDIT_LOGS: Feed("postgres", audit_doc, "audit_id", table=keyset_feed.AUDIT_LOGS,
                     version=_version_at("occurred_at")),
    CREDIT_REPORTS: Feed("mongo", credit_report_index_doc, "report_id", collection="credit_reports",
                         version=_version_at("created_at")),
    DISPUTES: Feed("mongo", dispute_index_doc, "case_id", collection="dispute_cases"),
}
