"""PostgreSQL payments database: the pool adapter and the repositories built on it."""

from stores.postgres.analytics import AnalyticsRepository
from stores.postgres.audit import AuditRepository
from stores.postgres.fx import FxRepository
from stores.postgres.models import (
    AuditEntry,
    AuditRecord,
    ChainReport,
    CorridorVolume,
    Page,
    TransactionDetail,
    TransactionSummary,
    UserProfile,
    WalletBalance,
    WalletDayVolume,
)
from stores.postgres.pool import PostgresStore
from stores.postgres.transactions import TransactionRepository
from stores.postgres.users import UserRepository
from stores.postgres.wallets import WalletRepository

__all__ = [
    "AnalyticsRepository",
    "AuditEntry",
    "AuditRecord",
    "AuditRepository",
    "ChainReport",
    "CorridorVolume",
    "FxRepository",
    "Page",
    "PostgresStore",
    "TransactionDetail",
    "TransactionRepository",
    "TransactionSummary",
    "UserProfile",
    "UserRepository",
    "WalletBalance",
    "WalletDayVolume",
    "WalletRepository",
]
