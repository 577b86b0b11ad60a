"""A replay venue in its own process, so its generated market paths are not counted in a measured
process's memory. Prints one JSON line `{"url": ..., "pid": ...}`, then serves until stdin closes.

    python -m bench._replay_serve --days N [--seed S] [--now ISO]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime

from bench import _replay


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, required=True)
    ap.add_argument("--seed", type=int, default=_replay.SEED)
    ap.add_argument("--now", default=_replay.NOW.isoformat())
    args = ap.parse_args(argv)
    from coinline.replay import ReplayServer

    server = ReplayServer(_replay.market(args.days, now=datetime.fromisoformat(args.now), seed=args.seed))
    url = server.start()
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()   # the parent closes our stdin (or dies) when it is done
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
