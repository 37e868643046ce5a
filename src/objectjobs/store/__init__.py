"""Job stores: the interface and its SQL (SQLite, PostgreSQL) implementation."""
