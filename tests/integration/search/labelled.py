"""A small labelled query set over the bundled knowledge base: query -> relevant article ids."""

from __future__ import annotations

LABELLED: list[tuple[str, set[str]]] = [
    ("how long does M-Pesa take to arrive", {"transfer-us-ke"}),
    ("what do I need to send to a NUBAN account", {"transfer-us-ng"}),
    ("my credit report lists a credit card I never opened", {"disputes-how-to"}),
    ("what margin do you add to the exchange rate", {"fx-fees"}),
    ("send pounds to MTN MoMo wallet in Accra", {"transfer-gb-gh"}),
    ("is USDT withdrawal reversible if I typed the wrong address", {"stablecoins"}),
    ("documents needed to verify my identity", {"kyc-verification"}),
    ("can I cancel a transfer after it was paid out", {"refunds"}),
    ("I just moved to America and have no credit history", {"credit-building"}),
    ("what should a letter to the bureau include", {"dispute-letters"}),
    ("which factors affect my score the most", {"credit-basics"}),
    ("what steps will raise my score over the next months", {"action-plans"}),
    ("Faster Payments from a UK bank", {"transfer-gb-gh"}),
    ("gas fee when moving stablecoins on chain", {"stablecoins"}),
    ("how many days does the bureau have to investigate", {"disputes-how-to", "dispute-letters"}),
    ("utilisation below 30 percent", {"credit-basics", "action-plans"}),
    ("rent reporting", {"credit-building", "action-plans"}),
    ("money came back because the wallet was full", {"refunds", "transfer-us-ke"}),
    ("BVN", {"kyc-verification"}),
    ("naira payout timing", {"transfer-us-ng"}),
    ("card refund takes how long", {"refunds"}),
    ("credit coach permissions", {"action-plans"}),
    ("is checking my own score bad", {"credit-basics"}),
    ("chargeback with my card issuer", {"refunds"}),
]


def reciprocal_rank(ranked_sources: list[str], relevant: set[str]) -> float:
    seen: list[str] = []
    for s in ranked_sources:
        if s not in seen:
            seen.append(s)
    for i, s in enumerate(seen, start=1):
        if s in relevant:
            return 1.0 / i
    return 0.0
