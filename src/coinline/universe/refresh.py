"""Universe refresh: propose the next universe version from a market snapshot, then approve it.

Workflow (the active universe is never changed by a refresh):
1. `propose_universe(rows, active, as_of=...)` ranks eligible coins (see `exclusions`) by market cap
   and builds a `UniverseProposal`: the coins, the excluded rows with reason codes, and a diff against
   the active universe matched by CoinGecko id (symbols collide).
2. `write_proposal(proposal, universe_dir)` writes `<universe_dir>/proposals/<VERSION>.json`
   (deterministic JSON carrying a `content_sha256` of its own content).
3. A person reviews it; `approve_proposal(universe_dir, VERSION, approver=..., reason=..., at=...)`
   verifies the proposal is unchanged, writes `<universe_dir>/approvals/<VERSION>.json` (who, when,
   why, sha256 of the proposal file) and then the activated `<universe_dir>/<VERSION>.json`, which
   `coinline.universe.model.load_universe(VERSION, universe_dir)` loads. Selecting it for training
   is a separate setting (TRAINING_UNIVERSE_VERSION).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coinline.errors import ConfigError
from coinline.providers.coingecko import MarketRow, market_sort_key
from coinline.universe.exclusions import DEFAULT_RULES, ExclusionRules, Reason, classify
from coinline.universe.model import Coin, Universe, load_universe

PROPOSALS_DIR = "proposals"
APPROVALS_DIR = "approvals"
NO_MARKET_CAP = "NO_MARKET_CAP"  # reason code for rows that cannot be ranked (null or zero cap)
_VERSION = re.compile(r"^UNIVERSE_V(\d+)_([A-Z0-9_]+)$")
_SAFE_VERSION = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")


@dataclass(frozen=True)
class ProposedCoin:
    rank: int                        # position by market cap among eligible rows (1-based)
    symbol: str
    coingecko_id: str
    coinapi_asset_id: str
    kraken_altname: str
    kraken_asset_id: str | None
    kraken_pairs: Mapping[str, Mapping[str, str]]
    needs_mapping_review: bool       # new coin: provider mappings are guesses / unknown
    name: str
    market_cap: float | None
    coingecko_rank: int | None       # CoinGecko's market_cap_rank, informational

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "symbol": self.symbol,
            "coingecko_id": self.coingecko_id,
            "coinapi_asset_id": self.coinapi_asset_id,
            "kraken": {
                "altname": self.kraken_altname,
                "asset_id": self.kraken_asset_id,
                "pairs": {q: dict(p) for q, p in self.kraken_pairs.items()},
            },
            "needs_mapping_review": self.needs_mapping_review,
            "name": self.name,
            "market_cap": self.market_cap,
            "coingecko_rank": self.coingecko_rank,
        }


@dataclass(frozen=True)
class ExcludedRow:
    coingecko_id: str
    symbol: str
    name: str
    reason: str                      # a `Reason` value or NO_MARKET_CAP
    rule: str
    market_cap: float | None
    coingecko_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("coingecko_id", "symbol", "name", "reason", "rule", "market_cap", "coingecko_rank")}


@dataclass(frozen=True)
class AddedCoin:
    coingecko_id: str
    symbol: str
    new_rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"coingecko_id": self.coingecko_id, "symbol": self.symbol, "new_rank": self.new_rank}


@dataclass(frozen=True)
class RemovedCoin:
    coingecko_id: str
    symbol: str
    old_rank: int
    why: str                         # "excluded: STABLECOIN", "ranked 34 (below top 30)", "absent from ..."

    def to_dict(self) -> dict[str, Any]:
        return {"coingecko_id": self.coingecko_id, "symbol": self.symbol, "old_rank": self.old_rank,
                "why": self.why}


@dataclass(frozen=True)
class RankChange:
    coingecko_id: str
    symbol: str
    old_rank: int
    new_rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"coingecko_id": self.coingecko_id, "symbol": self.symbol, "old_rank": self.old_rank,
                "new_rank": self.new_rank}


@dataclass(frozen=True)
class UniverseDiff:
    added: tuple[AddedCoin, ...]
    removed: tuple[RemovedCoin, ...]
    rank_changes: tuple[RankChange, ...]

    def added_ids(self) -> list[str]:
        return [a.coingecko_id for a in self.added]

    def removed_ids(self) -> list[str]:
        return [r.coingecko_id for r in self.removed]

    def to_dict(self) -> dict[str, Any]:
        return {"added": [a.to_dict() for a in self.added], "removed": [r.to_dict() for r in self.removed],
                "rank_changes": [c.to_dict() for c in self.rank_changes]}


@dataclass(frozen=True)
class UniverseProposal:
    version: str
    based_on: str                    # the active version it was diffed against
    as_of: datetime                  # UTC time of the market snapshot
    size: int
    quotes: tuple[str, ...]
    coins: tuple[ProposedCoin, ...]
    excluded: tuple[ExcludedRow, ...]
    diff: UniverseDiff
    manual_exclusions: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    source: str = "coingecko GET /coins/markets (order=market_cap_desc)"
    status: str = "proposed"

    def coin_ids(self) -> list[str]:
        return [c.coingecko_id for c in self.coins]

    def excluded_reasons(self) -> dict[str, str]:
        return {e.coingecko_id: e.reason for e in self.excluded}

    def to_dict(self) -> dict[str, Any]:
        """The proposal document (universe-file format plus review fields), with `content_sha256`."""
        doc = {
            "version": self.version,
            "status": self.status,
            "created": self.as_of.date().isoformat(),
            "as_of": _iso(self.as_of),
            "based_on": self.based_on,
            "size": self.size,
            "description": (f"Top {self.size} non-stable coins by market cap as of {_iso(self.as_of)}, "
                            f"proposed from {self.source}; stablecoins, tokenized fiat/commodities and "
                            "wrapped/staked wrappers excluded."),
            "source": self.source,
            "quotes": list(self.quotes),
            "coins": [c.to_dict() for c in self.coins],
            "excluded": [e.to_dict() for e in self.excluded],
            "diff": self.diff.to_dict(),
            "manual_exclusions": dict(sorted(self.manual_exclusions.items())),
            "warnings": list(self.warnings),
        }
        doc["content_sha256"] = content_sha256(doc)
        return doc

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, stable list order) for files and `--json` printing."""
        return dump_json(self.to_dict())


def dump_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def content_sha256(doc: Mapping[str, Any]) -> str:
    """sha256 of a document's canonical JSON, ignoring its own `content_sha256` field."""
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def next_version(active_version: str, size: int) -> str:
    """UNIVERSE_V1_TOP30_NON_STABLE -> UNIVERSE_V2_TOP30_NON_STABLE (TOP<n> follows `size`)."""
    m = _VERSION.match(active_version)
    if not m:
        raise ConfigError(f"cannot derive the next version from {active_version!r} "
                          "(expected UNIVERSE_V<n>_<SUFFIX>); pass proposed_version")
    suffix = re.sub(r"(?<![A-Z0-9])TOP\d+(?![0-9])", f"TOP{size}", m.group(2))
    return f"UNIVERSE_V{int(m.group(1)) + 1}_{suffix}"


def propose_universe(rows: Sequence[MarketRow], active: Universe, *, size: int = 30,
                     proposed_version: str | None = None, as_of: datetime,
                     manual_exclusions: Mapping[str, str] | None = None,
                     rules: ExclusionRules = DEFAULT_RULES) -> UniverseProposal:
    """Rank eligible rows by market cap (descending, ties by id; never by position or CoinGecko's
    rank) and propose the top `size` as the next universe version. Pure: writes nothing.

    `manual_exclusions` (CoinGecko id -> note) is the version's explicit exclusion list; it is carried
    into the proposal. Coins already in `active` keep their provider mappings; new coins get
    `coinapi_asset_id = SYMBOL`, no Kraken pairs and `needs_mapping_review: true`."""
    if size < 1:
        raise ConfigError(f"universe size must be >= 1, got {size}")
    if as_of.tzinfo is None:
        raise ConfigError("as_of must be timezone-aware (UTC)")
    version = proposed_version or next_version(active.version, size)
    _check_version_name(version)
    if version == active.version:
        raise ConfigError(f"proposed version {version} is the active version; choose a new version name")
    manual = dict(manual_exclusions or {})
    rules = dataclasses.replace(rules, manual={**rules.manual, **manual})

    seen: set[str] = set()
    eligible: list[MarketRow] = []
    excluded: list[ExcludedRow] = []
    for row in sorted(rows, key=market_sort_key):
        if row.id in seen:
            continue
        seen.add(row.id)
        verdict = classify(row, rules)
        if verdict is None and (row.market_cap is None or row.market_cap <= 0):
            reason, rule = NO_MARKET_CAP, "market cap is null or zero: cannot be ranked"
        elif verdict is not None:
            reason, rule = verdict.reason.value, verdict.rule
        else:
            eligible.append(row)
            continue
        excluded.append(ExcludedRow(row.id, row.symbol, row.name, reason, rule, row.market_cap,
                                    row.market_cap_rank))

    by_id = {c.coingecko_id: c for c in active.coins}
    chosen = eligible[:size]
    coins = tuple(_proposed_coin(i, row, by_id.get(row.id)) for i, row in enumerate(chosen, start=1))

    warnings: list[str] = []
    if len(coins) < size:
        warnings.append(f"only {len(coins)} eligible coins in the market data for a universe of {size}")
    symbols: dict[str, list[str]] = {}
    for c in coins:
        symbols.setdefault(c.symbol, []).append(c.coingecko_id)
    for sym, ids in sorted(symbols.items()):
        if len(ids) > 1:
            warnings.append(f"symbol {sym} is shared by {', '.join(ids)}: rename one before approval")
    review = [c.coingecko_id for c in coins if c.needs_mapping_review]
    if review:
        warnings.append(f"new coins need provider mapping review (Kraken pairs unknown): {', '.join(review)}")

    new_rank = {c.coingecko_id: c.rank for c in coins}
    eligible_pos = {row.id: i for i, row in enumerate(eligible, start=1)}
    excluded_by_id = {e.coingecko_id: e for e in excluded}
    added = tuple(AddedCoin(c.coingecko_id, c.symbol, c.rank) for c in coins if c.coingecko_id not in by_id)
    removed = []
    for old in sorted(active.coins, key=lambda c: (c.rank, c.coingecko_id)):
        if old.coingecko_id in new_rank:
            continue
        if old.coingecko_id in excluded_by_id:
            why = f"excluded: {excluded_by_id[old.coingecko_id].reason}"
        elif old.coingecko_id in eligible_pos:
            why = f"ranked {eligible_pos[old.coingecko_id]} among eligible coins (below top {size})"
        else:
            why = "absent from the market data"
        removed.append(RemovedCoin(old.coingecko_id, old.symbol, old.rank, why))
    changes = tuple(RankChange(c.coingecko_id, c.symbol, by_id[c.coingecko_id].rank, c.rank)
                    for c in coins if c.coingecko_id in by_id and by_id[c.coingecko_id].rank != c.rank)

    return UniverseProposal(
        version=version, based_on=active.version, as_of=as_of.astimezone(UTC), size=size,
        quotes=tuple(active.quotes), coins=coins, excluded=tuple(excluded),
        diff=UniverseDiff(added, tuple(removed), changes), manual_exclusions=manual, warnings=tuple(warnings),
    )


def _proposed_coin(rank: int, row: MarketRow, known: Coin | None) -> ProposedCoin:
    if known is not None:
        return ProposedCoin(rank, known.symbol, known.coingecko_id, known.coinapi_asset_id, known.kraken_altname,
                            known.kraken_asset_id, {q: dict(p) for q, p in known.kraken_pairs.items()}, False,
                            row.name, row.market_cap, row.market_cap_rank)
    symbol = row.symbol.upper()
    return ProposedCoin(rank, symbol, row.id, symbol, symbol, None, {}, True, row.name, row.market_cap,
                        row.market_cap_rank)


def _check_version_name(version: str) -> None:
    if not _SAFE_VERSION.match(version):
        raise ConfigError(f"universe version {version!r} must be upper-case letters, digits and underscores")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def proposal_path(universe_dir: Path, version: str) -> Path:
    return Path(universe_dir) / PROPOSALS_DIR / f"{version}.json"


def approval_path(universe_dir: Path, version: str) -> Path:
    return Path(universe_dir) / APPROVALS_DIR / f"{version}.json"


def write_proposal(proposal: UniverseProposal, universe_dir: Path) -> Path:
    """Write `<universe_dir>/proposals/<version>.json`. Never touches an active universe file; refuses
    a version that is already approved or active. An unapproved proposal of the same version is
    replaced (re-running a refresh)."""
    _check_version_name(proposal.version)
    universe_dir = Path(universe_dir)
    if approval_path(universe_dir, proposal.version).exists() or (universe_dir / f"{proposal.version}.json").exists():
        raise ConfigError(f"universe version {proposal.version} is already approved in {universe_dir}: activate it "
                          f"with TRAINING_UNIVERSE_VERSION={proposal.version} (the next refresh then proposes the "
                          "version after it), or name another version with `coinline universe refresh NAME`")
    path = proposal_path(universe_dir, proposal.version)
    _write_atomic(path, proposal.to_json())
    return path


def load_proposal(universe_dir: Path, version: str) -> dict[str, Any]:
    """The proposal document as written (raises ConfigError when there is none)."""
    _check_version_name(version)
    path = proposal_path(Path(universe_dir), version)
    if not path.is_file():
        raise ConfigError(f"no proposal {version} in {path.parent} (known: {', '.join(list_proposals(universe_dir)) or 'none'})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"proposal file {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def list_proposals(universe_dir: Path) -> list[str]:
    folder = Path(universe_dir) / PROPOSALS_DIR
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def approve_proposal(universe_dir: Path, version: str, *, approver: str, reason: str, at: datetime) -> Path:
    """Approve a written proposal: write the approval record, then the activated universe file
    `<universe_dir>/<version>.json` (status "active"). Returns the universe file's path.

    Raises ConfigError for an unknown proposal, one already approved, a proposal edited after it was
    proposed (content hash mismatch), or a missing approver/reason."""
    universe_dir = Path(universe_dir)
    if not approver.strip():
        raise ConfigError("approval needs an approver: `coinline universe approve VERSION --approver NAME --reason TEXT`")
    if not reason.strip():
        raise ConfigError("approval needs a reason: `coinline universe approve VERSION --approver NAME --reason TEXT`")
    if at.tzinfo is None:
        raise ConfigError("approval time must be timezone-aware (UTC)")
    doc = load_proposal(universe_dir, version)
    p_path = proposal_path(universe_dir, version)
    a_path = approval_path(universe_dir, version)
    u_path = universe_dir / f"{version}.json"
    if a_path.exists() or u_path.exists():
        raise ConfigError(f"proposal {version} is already approved ({a_path if a_path.exists() else u_path})")
    if doc.get("version") != version or doc.get("status") != "proposed":
        raise ConfigError(f"proposal file {p_path} is not a proposal for {version} "
                          f"(version={doc.get('version')!r}, status={doc.get('status')!r})")
    recorded, actual = doc.get("content_sha256"), content_sha256(doc)
    if recorded != actual:
        raise ConfigError(f"proposal file {p_path} was modified after it was proposed (content sha256 "
                          f"{actual} != recorded {recorded}); re-run the refresh to propose again")
    file_sha = hashlib.sha256(p_path.read_bytes()).hexdigest()
    review = [c["coingecko_id"] for c in doc["coins"] if c.get("needs_mapping_review")]

    record = {
        "version": version,
        "approved_by": approver.strip(),
        "approved_at": _iso(at),
        "reason": reason.strip(),
        "proposal_file": f"{PROPOSALS_DIR}/{version}.json",
        "proposal_sha256": file_sha,
        "based_on": doc.get("based_on"),
        "coins_needing_mapping_review": review,
    }
    active_doc = {
        "version": version,
        "status": "active",
        "created": doc.get("created"),
        "as_of": doc.get("as_of"),
        "based_on": doc.get("based_on"),
        "description": doc.get("description"),
        "approved_by": record["approved_by"],
        "approved_at": record["approved_at"],
        "proposal_sha256": file_sha,
        "quotes": doc["quotes"],
        "coins": doc["coins"],
        "manual_exclusions": doc.get("manual_exclusions", {}),
    }
    _write_atomic(a_path, dump_json(record))
    _write_atomic(u_path, dump_json(active_doc))
    load_universe(version, universe_dir)  # the activated file must load; raises ConfigError if not
    return u_path


def load_manual_exclusions(version: str, universe_dir: Path | None = None) -> dict[str, str]:
    """The `manual_exclusions` (CoinGecko id -> note) of a universe version file, {} when it has none."""
    candidates = [Path(universe_dir) / f"{version}.json"] if universe_dir is not None else []
    for path in candidates:
        if path.is_file():
            return _manual_from(json.loads(path.read_text(encoding="utf-8")), str(path))
    from importlib import resources

    packaged = resources.files("coinline.universe") / "versions" / f"{version}.json"
    if packaged.is_file():
        return _manual_from(json.loads(packaged.read_text(encoding="utf-8")), f"package:{version}.json")
    raise ConfigError(f"universe version {version!r} not found")


def _manual_from(doc: Mapping[str, Any], origin: str) -> dict[str, str]:
    raw = doc.get("manual_exclusions", {})
    if isinstance(raw, list):
        raw = {str(i): "" for i in raw}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"universe file {origin}: manual_exclusions must map CoinGecko id -> note")
    return dict(raw)


__all__ = [
    "NO_MARKET_CAP", "AddedCoin", "ExcludedRow", "ProposedCoin", "RankChange", "Reason", "RemovedCoin",
    "UniverseDiff", "UniverseProposal", "approval_path", "approve_proposal", "content_sha256",
    "list_proposals", "load_manual_exclusions", "load_proposal", "next_version", "proposal_path",
    "propose_universe", "write_proposal",
]
