"""Job types: one module per type."""
