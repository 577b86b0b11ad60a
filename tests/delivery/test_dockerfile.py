"""Static checks of images/coinline/Dockerfile and .dockerignore (no container engine needed): a pinned
base, a non-root user, pinned dependencies, no secrets in the image or its build context."""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "images" / "coinline" / "Dockerfile"
SECRETISH = re.compile(r"(_API_KEY|_API_SECRET|_ACCESS_KEY_ID|_SECRET_ACCESS_KEY|PASSWORD|TOKEN)\b", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        buf = f"{buf} {line[:-1]}" if line.endswith("\\") else f"{buf} {line}"
        if not line.endswith("\\"):
            op, _, args = buf.strip().partition(" ")
            out.append((op.upper(), " ".join(args.split())))
            buf = ""
    return out


def arg_defaults() -> dict[str, str]:
    out = {}
    for op, args in instructions():
        if op == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value.strip('"')
    return out


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(resolved base image, instructions) per stage."""
    out: list[tuple[str, list]] = []
    defaults = arg_defaults()
    for op, args in instructions():
        if op == "FROM":
            image = args.split()[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), image)
            out.append((image, []))
        elif out:
            out[-1][1].append((op, args))
    return out


def test_every_base_image_is_pinned_python_311_slim():
    bases = [image for image, _ in stages()]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in bases:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"{image}: pin a patch version of 3.11-slim"


def test_runtime_stage_runs_as_a_non_root_user_with_the_coinline_entrypoint():
    _, runtime = stages()[-1]
    users = [args for op, args in runtime if op == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 10000, uid
    last_user = max(i for i, (op, _) in enumerate(runtime) if op == "USER")
    assert not [op for op, _ in runtime[last_user:] if op == "RUN"], "no RUN after dropping root"
    entry = [args for op, args in runtime if op == "ENTRYPOINT"]
    assert entry == ['["coinline"]']


def test_runtime_stage_copies_the_built_environment_not_the_sources():
    _, runtime = stages()[-1]
    copies = [args for op, args in runtime if op == "COPY"]
    assert any(a.startswith("--from=build") for a in copies)
    assert not any(re.search(r"(^|\s)(src|\.)(\s|$)", a) and "--from" not in a for a in copies)


def test_dependencies_install_with_the_constraints_and_the_cpu_torch_index():
    build_image, build = stages()[0]
    runs = " ".join(args for op, args in build if op == "RUN")
    copies = " ".join(args for op, args in build if op == "COPY")
    assert "constraints.txt" in copies
    pip = [r for op, r in build if op == "RUN" and "pip install" in r]
    assert pip and all("-c constraints.txt" in r for r in pip)
    assert "pip check" in runs
    assert arg_defaults()["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert "--extra-index-url" in runs


def test_no_secrets_are_added_or_baked_in():
    for op, args in instructions():
        assert op != "ADD", f"use COPY (ADD fetches URLs and unpacks archives): ADD {args}"
        if op in ("ENV", "ARG", "LABEL"):
            assert not SECRETISH.search(args), f"{op} {args}"
        if op == "COPY":
            sources = [s for s in shlex.split(args) if not s.startswith("--")][:-1]
            for src in sources:
                assert not re.search(r"(^|/)\.env($|\.)|secret|credential|\.pem$|\.key$", src, re.I), src


def test_everything_the_dockerfile_copies_exists_and_survives_dockerignore():
    for _, body in stages():
        for op, args in body:
            if op != "COPY" or "--from" in args:
                continue
            for src in [s for s in shlex.split(args) if not s.startswith("--")][:-1]:
                assert (ROOT / src).exists(), src
                assert not ignored(src), f".dockerignore drops {src}, which the Dockerfile copies"


def _rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a matched directory covers its files
    candidates = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
    return any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates)


def ignored(path: str) -> bool:
    """Docker's rule: the last matching line decides; `!` re-includes."""
    verdict = False
    for include, pattern in _rules():
        if _matches(pattern, path):
            verdict = not include
    return verdict


@pytest.mark.parametrize("path", [".env", "src/.env", ".venv/bin/python", "lake/raw_candles/x.parquet", ".git/config",
                                  ".tools/helm/helm", "universe/proposals/V2.json", "reports/run.json",
                                  "src/coinline/__pycache__/cli.cpython-311.pyc", "tests/conftest.py"])
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context(path):
    assert ignored(path)


@pytest.mark.parametrize("path", ["src/coinline/cli.py", "constraints.txt", "pyproject.toml",
                                  "pipelines/compiled/full.yaml"])
def test_dockerignore_keeps_what_the_build_needs(path):
    assert not ignored(path)
