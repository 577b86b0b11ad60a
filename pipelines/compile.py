"""Compile every pipeline to `pipelines/compiled/<name>.yaml` (`python -m pipelines.compile`).

Deterministic: the same code gives byte-identical specs (tests regenerate them and compare with the
committed ones). `--check` only compares and exits 1 when a committed spec is stale. `--image REF` and
`--trainer-image REF` write specs whose components run REF instead of the default images (use with
`--out`; the committed specs always carry the defaults).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from kfp import compiler

from coinline import kfp_deploy
from components.image import COINLINE_IMAGE, TRAINER_IMAGE
from pipelines import PIPELINES

COMPILED = Path(__file__).resolve().parent / "compiled"


def compile_all(out: Path = COMPILED, *, image: str | None = None, trainer_image: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    images = {role: ref for role, ref, default in (("runtime", image, COINLINE_IMAGE),
                                                   ("trainer", trainer_image, TRAINER_IMAGE)) if ref and ref != default}
    for name, pipeline in sorted(PIPELINES.items()):
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        if images:  # the same swap the Helm chart's uploader makes with the chart's image values
            path.write_text(kfp_deploy.dump_spec(kfp_deploy.retarget(kfp_deploy.load_spec(path.read_text()), images)))
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
    parser.add_argument("--trainer-image", help=f"image of the model-fitting steps (default: {TRAINER_IMAGE})")
    parser.add_argument("--check", action="store_true", help="compare with pipelines/compiled, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: pipelines/compiled/{name} (run `python -m pipelines.compile`)", file=sys.stderr)
        return 1 if bad else 0
    if (args.image or args.trainer_image) and args.out.resolve() == COMPILED:
        parser.error("--image/--trainer-image need --out: the committed specs carry the default images")
    for path in compile_all(args.out, image=args.image, trainer_image=args.trainer_image):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
