"""Compile every pipeline to `pipelines/compiled/<name>.yaml` (`python -m pipelines.compile`).

Deterministic: the same code gives byte-identical specs (tests regenerate them and compare with the
committed ones). `--check` only compares and exits 1 when a committed spec is stale. `--image REF`
writes specs whose components run REF instead of the default image (use with `--out`; the committed
specs always carry the default).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from kfp import compiler

from components.image import COINLINE_IMAGE
from pipelines import PIPELINES

COMPILED = Path(__file__).resolve().parent / "compiled"


def compile_all(out: Path = COMPILED, *, image: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pipeline in sorted(PIPELINES.items()):
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        if image and image != COINLINE_IMAGE:
            text = path.read_text()
            path.write_text(text.replace(f"image: {COINLINE_IMAGE}\n", f"image: {image}\n"))
        written.append(path)
    return written


def stale(committed: Path = COMPILED) -> list[str]:
    """Names of compiled specs that differ from (or are missing in) `committed`, plus strays there."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in compile_all(Path(tmp))}
    present = {p.name: p.read_bytes() for p in committed.glob("*.yaml")}
    return sorted(name for name in fresh.keys() | present.keys() if fresh.get(name) != present.get(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=COMPILED, help="output folder (default: pipelines/compiled)")
    parser.add_argument("--image", help=f"component image (default: {COINLINE_IMAGE})")
    parser.add_argument("--check", action="store_true", help="compare with pipelines/compiled, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: pipelines/compiled/{name} (run `python -m pipelines.compile`)", file=sys.stderr)
        return 1 if bad else 0
    if args.image and args.out.resolve() == COMPILED:
        parser.error("--image needs --out: the committed specs carry the default image")
    for path in compile_all(args.out, image=args.image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
