"""Static checks of the images' Dockerfiles (images/coinline: the runtime image; images/trainer: the same
install with a selectable torch build) and .dockerignore (no container engine needed): a pinned base, a
non-root user, pinned dependencies, no secrets in the images or their build context."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "images" / "coinline" / "Dockerfile"
TRAINER = ROOT / "images" / "trainer" / "Dockerfile"
DOCKERFILES = pytest.mark.parametrize("dockerfile", [DOCKERFILE, TRAINER], ids=["coinline", "trainer"])
SECRETISH = re.compile(r"(_API_KEY|_API_SECRET|_ACCESS_KEY_ID|_SECRET_ACCESS_KEY|PASSWORD|TOKEN)\b", re.I)


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in dockerfile.read_text().splitlines():
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


def arg_defaults(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    out = {}
    for op, args in instructions(dockerfile):
        if op == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value.strip('"')
    return out


def stages(dockerfile: Path = DOCKERFILE) -> list[tuple[str, list[tuple[str, str]]]]:
    """(resolved base image, instructions) per stage."""
    out: list[tuple[str, list]] = []
    defaults = arg_defaults(dockerfile)
    for op, args in instructions(dockerfile):
        if op == "FROM":
            image = args.split()[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), image)
            out.append((image, []))
        elif out:
            out[-1][1].append((op, args))
    return out


@DOCKERFILES
def test_every_base_image_is_pinned_python_311_slim(dockerfile):
    bases = [image for image, _ in stages(dockerfile)]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in bases:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"{image}: pin a patch version of 3.11-slim"


@DOCKERFILES
def test_runtime_stage_runs_as_a_non_root_user_with_the_coinline_entrypoint(dockerfile):
    _, runtime = stages(dockerfile)[-1]
    users = [args for op, args in runtime if op == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 10000, uid
    assert uid == "10001", "the chart's runAsUser is 10001"
    last_user = max(i for i, (op, _) in enumerate(runtime) if op == "USER")
    assert not [op for op, _ in runtime[last_user:] if op == "RUN"], "no RUN after dropping root"
    entry = [args for op, args in runtime if op == "ENTRYPOINT"]
    assert entry == ['["coinline"]']


@DOCKERFILES
def test_runtime_stage_copies_the_built_environment_not_the_sources(dockerfile):
    _, runtime = stages(dockerfile)[-1]
    copies = [args for op, args in runtime if op == "COPY"]
    assert any(a.startswith("--from=build") for a in copies)
    assert not any(re.search(r"(^|\s)(src|\.)(\s|$)", a) and "--from" not in a for a in copies)


@DOCKERFILES
def test_build_stage_keeps_no_pip_cache_and_checks_the_environment(dockerfile):
    _, build = stages(dockerfile)[0]
    env = " ".join(args for op, args in build if op == "ENV")
    pip = [r for op, r in build if op == "RUN" and "pip install" in r]
    assert "PIP_NO_CACHE_DIR=1" in env or all("--no-cache-dir" in r for r in pip)
    assert pip and all("-c constraints.txt" in r for r in pip)
    assert "pip check" in " ".join(args for op, args in build if op == "RUN")


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


def test_trainer_torch_variant_is_a_build_arg_defaulting_to_cpu():
    defaults = arg_defaults(TRAINER)
    assert defaults["TORCH_VARIANT"] == "cpu"
    _, build = stages(TRAINER)[0]
    assert ("ARG", "TORCH_VARIANT") in build, "re-declare the global ARG inside the build stage to use it there"
    pip = [r for op, r in build if op == "RUN" and "pip install" in r]
    assert len(pip) == 1
    index = re.search(r"--extra-index-url\s+\"?([^\s\"]+)", pip[0])
    assert index, pip[0]
    url = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), index.group(1))
    assert url == "https://download.pytorch.org/whl/cpu", "the default build must be the CPU wheels"
    assert "${TORCH_VARIANT}" in index.group(1), "the index must follow TORCH_VARIANT (cu126 -> whl/cu126)"


def test_trainer_rejects_unknown_variants_and_verifies_the_torch_build():
    _, build = stages(TRAINER)[0]
    runs = [r for op, r in build if op == "RUN"]
    guard = next((r for r in runs if r.startswith("case \"${TORCH_VARIANT}\"")), None)
    assert guard and "exit 1" in guard, "an unknown TORCH_VARIANT must fail the build, before any install"
    patterns = guard.split(" in ", 1)[1].split(")", 1)[0].split("|")
    for variant, ok in {"cpu": True, "cu126": True, "cu128": True, "cu12": False, "rocm6.2": False,
                        "cpu;id": False, "": False}.items():
        assert any(fnmatch.fnmatchcase(variant, p) for p in patterns) is ok, variant
    pip = next(r for r in runs if "pip install" in r)
    assert "torch.version.cuda" in pip, "after installing, check that torch is the requested build"


def test_both_images_install_the_same_things_apart_from_torch():
    base = {k: v for k, v in arg_defaults().items() if k != "TORCH_INDEX_URL"}
    trainer = arg_defaults(TRAINER)
    assert base["PYTHON_IMAGE"] == trainer["PYTHON_IMAGE"]
    assert base["EXTRA_PACKAGES"] == trainer["EXTRA_PACKAGES"]
    copied = [sorted(a for op, a in stages(f)[0][1] if op == "COPY") for f in (DOCKERFILE, TRAINER)]
    assert copied[0] == copied[1]


@DOCKERFILES
def test_no_secrets_are_added_or_baked_in(dockerfile):
    for op, args in instructions(dockerfile):
        assert op != "ADD", f"use COPY (ADD fetches URLs and unpacks archives): ADD {args}"
        if op in ("ENV", "ARG", "LABEL"):
            assert not SECRETISH.search(args), f"{op} {args}"
            assert not re.search(r"(KEY|SECRET)\w*=", args, re.I), f"{op} {args}"
        if op == "COPY":
            sources = [s for s in shlex.split(args) if not s.startswith("--")][:-1]
            for src in sources:
                assert not re.search(r"(^|/)\.env($|\.)|secret|credential|\.pem$|\.key$", src, re.I), src


def test_no_image_hands_out_every_gpu():
    for dockerfile in (DOCKERFILE, TRAINER):
        for op, args in instructions(dockerfile):
            assert not (op == "ENV" and "NVIDIA_VISIBLE_DEVICES" in args), f"{dockerfile}: {args}"


@DOCKERFILES
def test_everything_the_dockerfile_copies_exists_and_survives_dockerignore(dockerfile):
    for _, body in stages(dockerfile):
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
