"""The HTTP API (MAPI jobs contract), console and metrics endpoints."""
