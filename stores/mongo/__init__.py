"""MongoDB credit store: the client adapter and the collections built on it."""

from stores.mongo.client import MongoStore

__all__ = [
    "AILogger",
    "ActionPlanRepository",
    "BureauResponseRepository",
    "CreditFactorRepository",
    "CreditReportRepository",
    "DisputeRepository",
    "MongoStore",
    "ScoreHistoryRepository",
    "ensure_schema",
]


def __getattr__(name: str):  # lazy: importing the client must not pull in every repository
    if name in {"ActionPlanRepository", "BureauResponseRepository", "CreditFactorRepository",
                "CreditReportRepository", "DisputeRepository", "ScoreHistoryRepository"}:
        from stores.mongo import credit

        return getattr(credit, name)
    if name == "AILogger":
        from stores.mongo.ai_logging import AILogger

        return AILogger
    if name == "ensure_schema":
        from stores.mongo.collections import ensure_schema

        return ensure_schema
    raise AttributeError(name)
