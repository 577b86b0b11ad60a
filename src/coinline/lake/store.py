"""One object-store abstraction for the lake: a root URI (file:// or s3://), the matching
`pyarrow.fs` filesystem for files and JSON objects, Delta storage options, and create-only writes
(O_EXCL on local disk, `If-None-Match: *` on S3) for leases and commit objects."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from coinline.errors import ConfigError
from coinline.secrets import Secret


class AlreadyExists(Exception):
    """A create-only write found the object already there."""


class CasConflict(Exception):
    """A compare-and-swap found the object changed (or present/absent) since the caller read it."""


@dataclass(repr=False)
class Lake:
    """Where everything lives. `root` is `file:///abs/dir` or `s3://bucket/prefix`."""

    root: str
    fs: pafs.FileSystem
    base_path: str                      # root as a path inside `fs` (no scheme)
    storage_options: dict[str, str]     # for deltalake
    _s3: Any = None                     # boto3 client for conditional writes (S3 only)

    def __repr__(self) -> str:  # storage_options may hold credentials
        return f"Lake({self.root!r})"

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def path(self, name: str) -> str:
        return f"{self.base_path.rstrip('/')}/{name}"

    # -- small JSON objects ---------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if self.is_s3:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # readers never see a half-written object

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, _dumps(obj))

    def read_bytes(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(name)) as src:
                return src.read()
        except FileNotFoundError:
            return None
        except OSError as exc:  # S3 reports a missing key as OSError on some versions
            if "NoSuchKey" in str(exc) or "does not exist" in str(exc) or "Path does not exist" in str(exc):
                return None
            raise

    def read_json(self, name: str) -> Any | None:
        data = self.read_bytes(name)
        return None if data is None else json.loads(data)

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the lake root) of objects under `prefix`, sorted."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        base = self.base_path.rstrip("/") + "/"
        return sorted(i.path[len(base):] for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File)

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(self.path(name))
        except FileNotFoundError:
            pass

    def create_only(self, name: str, obj: Any) -> None:
        """Write `obj` only if `name` does not exist yet; raise AlreadyExists otherwise (atomic)."""
        data = _dumps(obj)
        if self.is_s3:
            bucket, _, key = self.path(name).partition("/")
            try:
                self._s3.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            except self._s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise AlreadyExists(name) from None
                raise
            return
        target = self.path(name)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, target)  # atomic create-only publish of complete content
        except FileExistsError:
            raise AlreadyExists(name) from None
        finally:
            os.unlink(tmp)


    def compare_and_swap(self, name: str, expected: bytes | None, obj: Any) -> None:
        """Replace `name` with `obj` only if its current bytes are exactly `expected` (None: it must not
        exist); raise CasConflict otherwise. Atomic against other writers using this method: on S3 a
        conditional PUT (`If-Match: <etag of the compared bytes>` / `If-None-Match: *`); on local disk an
        exclusive `flock` on a sidecar lock file (released by the kernel if the holder dies) around
        compare + write-temp + fsync + rename."""
        data = _dumps(obj)
        if self.is_s3:
            self._s3_compare_and_swap(name, expected, data)
            return
        import fcntl

        target = self.path(name)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{target}.cas-lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                with open(target, "rb") as fh:
                    current: bytes | None = fh.read()
            except FileNotFoundError:
                current = None
            if current != expected:
                raise CasConflict(name)
            tmp = f"{target}.tmp-{os.getpid()}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(str(Path(target).parent), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _s3_compare_and_swap(self, name: str, expected: bytes | None, data: bytes) -> None:
        bucket, _, key = self.path(name).partition("/")
        client = self._s3
        if expected is None:
            condition = {"IfNoneMatch": "*"}
        else:
            try:
                got = client.get_object(Bucket=bucket, Key=key)
            except client.exceptions.NoSuchKey:
                raise CasConflict(name) from None
            if got["Body"].read() != expected:
                raise CasConflict(name)
            condition = {"IfMatch": got["ETag"]}  # the etag of exactly the bytes compared above
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except client.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise CasConflict(name) from None
            raise


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode()


def open_lake(url: str, *, endpoint_url: str = "", access_key: Secret | None = None,
              secret_key: Secret | None = None, region: str = "us-east-1") -> Lake:
    """Build the lake for OBJECT_STORE_URL. Relative file:// paths resolve against the cwd."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        raw = url[len("file://"):]
        path = Path(raw).expanduser()
        path = (Path.cwd() / path).resolve() if not path.is_absolute() else path
        path.mkdir(parents=True, exist_ok=True)
        return Lake(root=f"file://{path}", fs=pafs.LocalFileSystem(), base_path=str(path), storage_options={})
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"OBJECT_STORE_URL={url!r} has no bucket")
        import boto3

        access = access_key.reveal() if access_key else ""
        secret = secret_key.reveal() if secret_key else ""
        endpoint = endpoint_url or None
        fs = pafs.S3FileSystem(
            access_key=access or None, secret_key=secret or None, region=region,
            endpoint_override=endpoint, scheme=urlparse(endpoint).scheme if endpoint else "https",
            allow_bucket_creation=True,
        )
        options = {"AWS_REGION": region, "conditional_put": "etag"}
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if access:
            options["AWS_ACCESS_KEY_ID"] = access
            options["AWS_SECRET_ACCESS_KEY"] = secret
        client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                              aws_access_key_id=access or None, aws_secret_access_key=secret or None)
        base = f"{parsed.netloc}{parsed.path}".rstrip("/")
        _ensure_bucket(client, parsed.netloc, endpoint or "AWS S3")
        return Lake(root=f"s3://{base}", fs=fs, base_path=base, storage_options=options, _s3=client)
    raise ConfigError(f"OBJECT_STORE_URL={url!r} must start with file:// or s3://")


def _ensure_bucket(client: Any, bucket: str, where: str) -> None:
    """Create the bucket if missing; wrong credentials are a one-line ConfigError (no secret in it)."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError(f"OBJECT_STORE_URL bucket {bucket!r} at {where}: access refused ({code}); "
                              f"check OBJECT_STORE_ACCESS_KEY_ID / OBJECT_STORE_SECRET_ACCESS_KEY") from None
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise ConfigError(f"OBJECT_STORE_URL bucket {bucket!r} at {where} cannot be created ({code})") from None
