"""The agent tool surface: one spec per tool. Curated and parameterised; there is no "run any query" tool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agent_tools import analytics, compliance, credit, disputes, feedback, render, transactions
from agent_tools import inputs as i
from guards.pipeline import CallState
from guards.policy import unmask_reason_rule
from guards.principal import Principal


async def redact(payload: dict[str, Any], principal: Principal, rt: Any, state: CallState) -> dict[str, Any]:
    """Every string of every output goes through the role's redaction policy."""
    return await rt.redact_payload(payload, principal, state, unmasked=state.unmasked)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    handler: Callable[[Any, Principal, Any], Awaitable[BaseModel]]
    list_field: str | None = None
    read_only: bool = True
    postprocess: Callable[..., Awaitable[dict[str, Any]]] | None = redact
    render: Callable[[dict[str, Any]], str] | None = None


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("search_transactions", "Search transactions",
             "Search payments in your scope by date range, status, corridor, amount range, currency, platform "
             "reference (KRD-..., whole or its start) and counterparty name. The counterparty filter is an exact "
             "name match (case and extra spaces ignored, no partial match), and only on names you can see: "
             "customers on all their payments, staff on merchant and system counterparties only (a person's "
             "name is masked for staff and never matches); account references are never searchable. Each row "
             "says its counterparty_type (person, merchant, system). Newest first; pass next_cursor for the next "
             "page (after a cut page it continues right after the last row shown). Amounts are minor units.",
             i.SearchTransactionsInput, transactions.TransactionPage, transactions.search_transactions,
             list_field="transactions", render=render.transactions),
    ToolSpec("get_transaction", "Get a transaction",
             "One transaction with its double-entry ledger postings (each posting set balances to zero).",
             i.GetTransactionInput, transactions.TransactionDetailOut, transactions.get_transaction,
             render=render.transaction),
    ToolSpec("get_wallet_balances", "Wallet balances",
             "Balances per wallet and currency, derived from the ledger.",
             i.GetWalletBalancesInput, transactions.WalletBalancesOut, transactions.get_wallet_balances,
             list_field="wallets", render=render.wallets),
    ToolSpec("get_credit_report", "Get a credit report",
             "The latest credit report, a given version, or the version valid at a time (as_of). "
             "Identifiers such as SSN/BVN/NIN and account numbers are never returned.",
             i.GetCreditReportInput, credit.CreditReportOut, credit.get_credit_report,
             render=render.credit_report),
    ToolSpec("get_score_history", "Credit score history", "Monthly credit score points, oldest first.",
             i.GetScoreHistoryInput, credit.ScoreHistoryOut, credit.get_score_history, list_field="points",
             render=render.score_history),
    ToolSpec("get_action_plan", "Credit action plan", "The current credit-building plan and its steps.",
             i.GetActionPlanInput, credit.ActionPlanOut, credit.get_action_plan),
    ToolSpec("list_disputes", "List disputes", "Credit disputes in your scope, newest first, with a cursor.",
             i.ListDisputesInput, disputes.DisputeList, disputes.list_disputes, list_field="disputes",
             render=render.disputes),
    ToolSpec("get_dispute", "Get a dispute", "One dispute case: letters, bureau responses and status history.",
             i.GetDisputeInput, disputes.DisputeDetail, disputes.get_dispute),
    ToolSpec("search_knowledge", "Search knowledge",
             "Retrieve passages for a question (hybrid BM25 + vector search): help articles and, within your "
             "scope, credit reports, disputes and plans. Cite passages by their citation id.",
             i.SearchKnowledgeInput, feedback.KnowledgeResults, feedback.search_knowledge, list_field="passages",
             render=render.passages),
    ToolSpec("log_feedback", "Log feedback",
             "Record a rating of an answer in a conversation (stored redacted). The only write tool.",
             i.LogFeedbackInput, feedback.FeedbackAck, feedback.log_feedback, read_only=False),
    ToolSpec("corridor_volume", "Corridor volume",
             "Aggregated transaction count and volume of completed remittances by corridor, UTC day and currency "
             "pair; no row-level data. Only whole past days; a cell with fewer than min_cell_size transactions "
             "or distinct users is withheld and counted in suppressed_cells.",
             i.CorridorVolumeInput, analytics.CorridorVolumeOut, analytics.corridor_volume, list_field="rows"),
    ToolSpec("search_audit_logs", "Search audit logs",
             "Compliance: search the tamper-evident audit trail by actor, action, decision and time, or by free "
             "text (query). Values are masked unless unmask_reason is given: "
             f"{unmask_reason_rule()}; an unmasked read is itself audited with the reason. Audit text comes back "
             "delimited as «data».",
             compliance.SearchAuditLogsInput, compliance.AuditPage, compliance.search_audit_logs,
             list_field="entries"),
)
