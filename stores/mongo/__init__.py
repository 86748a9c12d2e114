"""MongoDB credit store: the client adapter and the collections built on it."""

from stores.mongo.client import MongoStore

__all__ = ["MongoStore"]
