"""Create the lake's bucket in the chart's MinIO unless it exists (the minio-bucket hook Job).

Run after every install and upgrade with the coinline image's Python and boto3. Idempotent: an existing
bucket (ours or already owned by us) is left alone. MinIO may still be starting when the hook runs, so
connection errors and 5xx answers are retried until --wait-seconds have passed. The root credentials are
read from files (root-user, root-password) in --credentials-dir, the Secret volume of the Job.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MISSING = {"404", "NoSuchBucket", "NotFound"}
OURS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


class NotReady(Exception):
    """The server did not answer (yet): worth another try."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    return int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def ensure_bucket(client: Any, bucket: str, client_error: type[Exception] = Exception) -> str:
    """'created' or 'exists'; raises NotReady on a 5xx answer, re-raises any other error."""
    try:
        client.head_bucket(Bucket=bucket)
        return "exists"
    except client_error as exc:
        if _status(exc) >= 500:
            raise NotReady(str(exc)) from exc
        if _code(exc) not in MISSING:
            raise
    try:
        client.create_bucket(Bucket=bucket)
    except client_error as exc:
        if _code(exc) in OURS:
            return "exists"
        if _status(exc) >= 500:
            raise NotReady(str(exc)) from exc
        raise
    return "created"


def ensure_with_wait(attempt: Callable[[], str], wait_seconds: float, retry_on: tuple[type[Exception], ...],
                     sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> str:
    """attempt() until it returns or wait_seconds have passed (then the last error propagates)."""
    deadline, delay = clock() + wait_seconds, 1.0
    while True:
        try:
            return attempt()
        except retry_on as exc:
            if clock() + delay > deadline:
                raise
            print(f"create-bucket: object store not ready ({type(exc).__name__}); retrying in {delay:.0f}s", flush=True)
            sleep(delay)
            delay = min(delay * 2, 10.0)


def read_credentials(directory: Path) -> tuple[str, str]:
    user = (directory / "root-user").read_text().strip()
    password = (directory / "root-password").read_text().strip()
    if not user or not password:
        raise SystemExit(f"create-bucket: empty credentials in {directory}")
    return user, password


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="create_bucket.py")
    p.add_argument("--endpoint", required=True, help="S3 endpoint, e.g. http://coinline-minio.ns.svc:9000")
    p.add_argument("--bucket", required=True)
    p.add_argument("--credentials-dir", required=True, type=Path)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--wait-seconds", type=float, default=300)
    args = p.parse_args(argv)

    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    user, password = read_credentials(args.credentials_dir)
    client = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name=args.region or "us-east-1", aws_access_key_id=user,
        aws_secret_access_key=password,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )
    outcome = ensure_with_wait(
        lambda: ensure_bucket(client, args.bucket, ClientError), args.wait_seconds,
        (NotReady, EndpointConnectionError, ConnectionClosedError, ReadTimeoutError))
    print(f"create-bucket: s3://{args.bucket} at {args.endpoint}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
