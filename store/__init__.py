"""The lab's DuckDB store: schema, the one writer, and the queries pages and reports need."""

from store.store import DEFAULT_DB, DatabaseLocked, NotADatabase, Store

__all__ = ["DEFAULT_DB", "DatabaseLocked", "NotADatabase", "Store"]
