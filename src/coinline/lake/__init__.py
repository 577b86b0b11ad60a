"""The storage edge: Delta tables (raw candles, corrections, known gaps) and small JSON objects,
on local disk or S3/MinIO through one `Lake` built from OBJECT_STORE_URL."""

from coinline.lake.store import Lake, open_lake

__all__ = ["Lake", "open_lake"]
