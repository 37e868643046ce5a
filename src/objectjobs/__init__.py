"""objectjobs: bulk jobs over S3-compatible buckets behind a MAPI-compatible jobs API."""

__version__ = "0.1.0"
