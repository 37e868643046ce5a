"""Storage drivers: the interface and its local and S3 implementations."""
