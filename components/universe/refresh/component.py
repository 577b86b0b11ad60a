"""refresh_universe: propose the next universe version from a CoinGecko market snapshot
(`coinline.providers.coingecko.fetch_markets` -> `coinline.universe.refresh.propose_universe` ->
`write_proposal`). It only proposes: the proposal is written under the universe folder's `proposals/`
and returned as artifacts; a person approves it (`coinline universe approve VERSION`); this step never
activates a universe."""

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from components.image import COINLINE_IMAGE


@dsl.component(base_image=COINLINE_IMAGE, packages_to_install=[], install_kfp_package=False)
def refresh_universe(
    object_store_url: str,
    proposal: Output[Artifact],
    summary: Output[Markdown],
    universe_version: str = "UNIVERSE_V1_TOP30_NON_STABLE",
    size: int = 30,
    proposed_version: str = "",
    venue: str = "auto",
    replay_history_days: int = 800,
    replay_seed: int = 7,
    replay_profile: str = "martingale",
    now: str = "",
) -> str:
    """Returns the proposed version's name. `universe_version` is the active universe the proposal is
    diffed against; `proposed_version` empty: the next version after it (`UNIVERSE_V<n+1>_...`)."""
    import logging
    from datetime import UTC, datetime
    from pathlib import Path

    from coinline.app import build_app
    from coinline.providers.coingecko import fetch_markets
    from coinline.step_env import step_settings
    from coinline.timeframes import parse_iso_utc
    from coinline.universe import load_universe
    from coinline.universe.refresh import propose_universe, write_proposal

    settings = step_settings({
        "OBJECT_STORE_URL": object_store_url, "TRAINING_UNIVERSE_VERSION": universe_version,
        "COINLINE_VENUE": venue, "COINLINE_REPLAY_HISTORY_DAYS": replay_history_days,
        "COINLINE_REPLAY_SEED": replay_seed, "COINLINE_REPLAY_PROFILE": replay_profile})
    udir = Path(settings.universe_dir)
    with build_app(settings, now=parse_iso_utc(now) if now else datetime.now(UTC)) as app:
        rows = fetch_markets(app.coingecko_gateway())
        proposed = propose_universe(rows, load_universe(settings.training_universe_version, udir), size=size,
                                    proposed_version=proposed_version or None, as_of=app.now)
    path = write_proposal(proposed, udir)
    doc = proposed.to_dict()
    with open(proposal.path, "w", encoding="utf-8") as f:
        f.write(proposed.to_json())
    proposal.metadata.update({"version": proposed.version, "based_on": proposed.based_on,
                              "content_sha256": doc["content_sha256"], "written_to": str(path)})

    def table(rows, cols):
        if not rows:
            return "(none)\n"
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    diff = doc["diff"]
    warnings = "".join(f"- {w}\n" for w in doc["warnings"]) or "(none)\n"
    text = (f"# Universe proposal {proposed.version} (not active)\n\n"
            f"- based on: `{proposed.based_on}`, as of {doc['as_of']}, {len(proposed.coins)} coins\n"
            f"- content sha256: `{doc['content_sha256']}`\n"
            f"- written to: `{path}`; approve with `coinline universe approve {proposed.version}`\n\n"
            f"## Added\n\n{table(diff['added'], ['coingecko_id', 'symbol', 'new_rank'])}\n"
            f"## Removed\n\n{table(diff['removed'], ['coingecko_id', 'symbol', 'old_rank', 'why'])}\n"
            f"## Coins\n\n{table(doc['coins'], ['rank', 'symbol', 'coingecko_id', 'needs_mapping_review'])}\n"
            f"## Warnings\n\n{warnings}")
    with open(summary.path, "w", encoding="utf-8") as f:
        f.write(text)
    logging.getLogger("coinline").info("universe proposal %s written to %s (not active)", proposed.version, path)
    return proposed.version
