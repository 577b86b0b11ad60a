"""Preflight: what a pipeline run needs from its deployment, checked before any step touches the lake, so
that a missing setting fails the run at once with one line naming it (not an S3 error deep inside an ingest
step an hour later). The first step of every Kubeflow pipeline (components/ops/preflight) runs it; so can
the chart's `helm test` (`coinline preflight --secret-name ... --config-map-name ...`, with both mounted as
optional volumes at SECRET_MOUNT and CONFIG_MAP_MOUNT).

Checked, every problem collected into the one line:
- the Kubernetes Secret and ConfigMap the steps read exist (non-empty) in the pod's namespace. Pipeline steps
  take them as optional environment (absent keys stay unset, so a Secret holding only the object-store keys
  is fine), so a wrong name (another release name, another namespace, multi-user KFP) would otherwise only
  show as missing endpoints and credentials. The preflight pod mounts both as optional volumes and looks at
  them: a missing object mounts as an empty folder. (A non-optional mount would leave the pod Pending in
  CreateContainerConfigError until the run times out, which is the silent late failure this replaces.)
- the credentials the settings need are set: object-store keys for an S3 endpoint other than AWS (MinIO),
  the historical provider's key when COINLINE_VENUE=live;
- the lake answers (S3: HEAD of the bucket and a one-key listing; a missing bucket is fine, the first writer
  creates it; file://: the folder exists or can be made);
- the providers answer (an HTTP response of any status from the historical provider's and Kraken's base
  URLs), unless the run uses the embedded replay venue or the pipeline calls no provider;
- the Ray cluster answers (a TCP connection to its address) when the run fans training out onto one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from coinline.errors import CoinlineError
from coinline.settings import Settings

log = logging.getLogger("coinline")

SECRET_MOUNT = "/etc/coinline/preflight/secret"        # where the preflight pod mounts the Secret (optional)
CONFIG_MAP_MOUNT = "/etc/coinline/preflight/config"    # ... and the ConfigMap
TIMEOUT_S = 5.0


class PreflightError(CoinlineError):
    """What the deployment lacks, as one line."""

    exit_code = 1


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.problems:
            return "preflight failed: " + "; ".join(self.problems)
        parts = [f"checked {', '.join(self.checked)}" if self.checked else "nothing to check"]
        if self.skipped:
            parts.append(f"skipped {', '.join(self.skipped)}")
        return "preflight ok: " + "; ".join(parts)


def in_kubernetes(env: dict[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get("KUBERNETES_SERVICE_HOST"))


def namespace(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return ""


def mounted_keys(folder: str | Path) -> list[str] | None:
    """The keys a Secret or ConfigMap volume projects into `folder` (kubelet's `..data` links left out);
    None when the folder does not exist."""
    path = Path(folder)
    if not path.is_dir():
        return None
    return sorted(p.name for p in path.iterdir() if not p.name.startswith(".."))


def check_object(kind: str, name: str, folder: str | Path, where: str) -> str | None:
    keys = mounted_keys(folder)
    if not name:
        return f"no {kind} name given (pipeline parameter k8s_{'secret' if kind == 'Secret' else 'config_map'}_name)"
    if not keys:
        return f"{kind} {name!r} is missing or empty{where}"
    return None


def check_credentials(settings: Settings, secret_name: str) -> list[str]:
    problems, holder = [], f" (not in Secret {secret_name!r})" if secret_name else ""
    if settings.object_store_url.startswith("s3://") and settings.object_store_endpoint_url:
        missing = [var for var, value in (("OBJECT_STORE_ACCESS_KEY_ID", settings.object_store_access_key_id),
                                          ("OBJECT_STORE_SECRET_ACCESS_KEY", settings.object_store_secret_access_key))
                   if not value]
        if missing:
            problems.append(f"{' and '.join(missing)} not set for the object store at "
                            f"{settings.object_store_endpoint_url}{holder}")
    if settings.venue == "live" and not settings.hist_api_key:
        problems.append(f"HIST_MARKET_DATA_API_KEY not set (COINLINE_VENUE=live){holder}")
    return problems


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def check_lake(settings: Settings, timeout: float = TIMEOUT_S) -> str | None:
    url = settings.object_store_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from coinline.lake import open_lake

        try:
            open_lake(url).list("_preflight/")
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return f"lake {url} is not usable ({_one_line(exc)})"
        return None
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    endpoint = settings.object_store_endpoint_url or None
    where = endpoint or "AWS S3"
    bucket, prefix = parsed.netloc, parsed.path.strip("/")

    def client(**extra):
        return boto3.client("s3", endpoint_url=endpoint, region_name=settings.object_store_region,
                            aws_access_key_id=settings.object_store_access_key_id.reveal() or None,
                            aws_secret_access_key=settings.object_store_secret_access_key.reveal() or None,
                            config=Config(connect_timeout=timeout, read_timeout=timeout,
                                          retries={"max_attempts": 2, "mode": "standard"}, **extra))

    try:
        s3 = client()
        s3.head_bucket(Bucket=bucket)
        s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    except NoCredentialsError:
        if not endpoint:
            return (f"lake {url} at {where}: no credentials (OBJECT_STORE_ACCESS_KEY_ID / "
                    f"OBJECT_STORE_SECRET_ACCESS_KEY unset and no role for the pod)")
        try:  # the missing keys are named by check_credentials; does the endpoint answer at all?
            client(signature_version=UNSIGNED).head_bucket(Bucket=bucket)
        except ClientError:
            return None
        except BotoCoreError as exc:
            return f"lake {url} does not answer at {where} ({_one_line(exc)})"
        return None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return None  # the first writer (plan_run, materialize) creates the bucket
        return (f"lake {url} at {where} refused access ({code or 'error'}); check OBJECT_STORE_ACCESS_KEY_ID / "
                f"OBJECT_STORE_SECRET_ACCESS_KEY")
    except BotoCoreError as exc:
        return f"lake {url} does not answer at {where} ({_one_line(exc)})"
    return None


def check_http(name: str, url: str, timeout: float = TIMEOUT_S) -> str | None:
    """Any HTTP response counts as an answer (a base URL may well say 404 or 401 without a key)."""
    import httpx

    try:
        httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"{name} does not answer at {url} ({_one_line(exc)})"
    return None


def ray_endpoint(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or not parsed.port:
        raise PreflightError(f"Ray address {address!r} is not host:port or ray://host:port")
    return parsed.hostname, parsed.port


def check_ray(address: str, timeout: float = TIMEOUT_S) -> str | None:
    try:
        host, port = ray_endpoint(address)
    except PreflightError as exc:
        return str(exc)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"Ray cluster does not answer at {address} ({_one_line(exc)})"


def run(settings: Settings, *, secret_name: str, config_map_name: str, providers: bool = True,
        ray_address: str = "", secret_dir: str | Path = SECRET_MOUNT, config_dir: str | Path = CONFIG_MAP_MOUNT,
        kubernetes: bool | None = None, timeout: float = TIMEOUT_S) -> Report:
    """Every check; the report lists what was checked, skipped and found wanting (nothing raised)."""
    report = Report()
    kubernetes = in_kubernetes() if kubernetes is None else kubernetes
    if kubernetes:
        ns = namespace()
        where = f" in namespace {ns!r}" if ns else ""
        for kind, name, folder in (("Secret", secret_name, secret_dir), ("ConfigMap", config_map_name, config_dir)):
            problem = check_object(kind, name, folder, where)
            report.problems += [problem] if problem else []
            report.checked.append(f"{kind} {name}")
    else:
        report.skipped.append("Secret and ConfigMap (not in a Kubernetes pod)")
    report.problems += check_credentials(settings, secret_name)
    problem = check_lake(settings, timeout)
    report.problems += [problem] if problem else []
    report.checked.append(f"lake {settings.object_store_url}")
    if not providers:
        report.skipped.append("providers (this pipeline calls none)")
    elif settings.offline:
        report.skipped.append("providers (replay venue)")
    else:
        for name, url in ((f"{settings.hist_provider} (historical provider)", settings.hist_base_url),
                          ("Kraken", settings.kraken_public_base_url)):
            problem = check_http(name, url, timeout)
            report.problems += [problem] if problem else []
            report.checked.append(name)
    if ray_address.strip():
        problem = check_ray(ray_address.strip(), timeout)
        report.problems += [problem] if problem else []
        report.checked.append(f"Ray {ray_address.strip()}")
    return report


def require(settings: Settings, **kwargs) -> str:
    """`run`, then PreflightError (one line) when anything is missing; else the report's line."""
    report = run(settings, **kwargs)
    if report.problems:
        raise PreflightError(report.line())
    log.info("%s", report.line())
    return report.line()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m coinline.preflight ...` is `coinline preflight ...`."""
    from coinline.cli import main as cli_main

    return cli_main(["preflight", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
