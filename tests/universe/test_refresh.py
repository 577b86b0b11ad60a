"""Universe refresh: exclusions, proposal + diff against V1, deterministic files, approval round-trip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from coinline.errors import ConfigError
from coinline.providers.coingecko import MarketRow, parse_markets
from coinline.universe.exclusions import DEFAULT_RULES, Reason, classify
from coinline.universe.model import load_universe
from coinline.universe.refresh import (
    NO_MARKET_CAP,
    approval_path,
    approve_proposal,
    list_proposals,
    load_manual_exclusions,
    next_version,
    proposal_path,
    propose_universe,
    write_proposal,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
TOP30 = SHARED / "data" / "api" / "coingecko" / "captured" / "coins_markets_usd_top30_2025-03-04.json"
V1 = "UNIVERSE_V1_TOP30_NON_STABLE"
V2 = "UNIVERSE_V2_TOP30_NON_STABLE"
AS_OF = datetime(2025, 3, 4, 14, 46, tzinfo=UTC)
AT = datetime(2025, 3, 5, 9, 0, tzinfo=UTC)

EXPECTED_EXCLUDED = {
    "tether": "STABLECOIN", "usd-coin": "STABLECOIN", "usds": "STABLECOIN", "ethena-usde": "STABLECOIN",
    "staked-ether": "LIQUID_STAKING", "wrapped-steth": "LIQUID_STAKING",
    "wrapped-bitcoin": "WRAPPED", "weth": "WRAPPED",
}
V1_IN_CAPTURE = {
    "bitcoin", "ethereum", "ripple", "binancecoin", "solana", "cardano", "tron", "hedera-hashgraph", "stellar",
    "chainlink", "avalanche-2", "litecoin", "the-open-network", "sui", "shiba-inu", "polkadot", "bitcoin-cash",
}
ADDED = {"dogecoin", "pi-network", "leo-token", "mantra-dao", "hyperliquid"}


@pytest.fixture(scope="module")
def rows() -> list[MarketRow]:
    if not TOP30.is_file():
        pytest.skip(f"shared capture {TOP30} is not available")
    return parse_markets(json.loads(TOP30.read_bytes()))


@pytest.fixture(scope="module")
def v1():
    return load_universe(V1)


def v1_file_sha() -> str:
    return hashlib.sha256((resources.files("coinline.universe") / "versions" / f"{V1}.json").read_bytes()).hexdigest()


def mrow(id: str, symbol: str, name: str, price: float | None = 3.0, cap: float | None = 1e9) -> MarketRow:
    return MarketRow(id, symbol, name, None, cap, price, 1e6, None)


# --- exclusions -------------------------------------------------------------------------------


def test_capture_exclusions_have_the_right_reason_codes(rows):
    got = {r.id: c.reason.value for r in rows if (c := classify(r)) is not None}
    assert got == EXPECTED_EXCLUDED


@pytest.mark.parametrize(("row", "reason"), [
    (mrow("tether-gold", "xaut", "Tether Gold", 2900.0), Reason.TOKENIZED_COMMODITY),
    (mrow("pax-gold", "paxg", "PAX Gold", 2900.0), Reason.TOKENIZED_COMMODITY),
    (mrow("some-gold-token", "sgt", "Vault Gold Token", 90.0), Reason.TOKENIZED_COMMODITY),
    (mrow("euro-coin", "eurc", "EURC", 1.05), Reason.TOKENIZED_FIAT),
    (mrow("new-euro", "neu", "Neo Euro Stable", 1.05), Reason.TOKENIZED_FIAT),
    (mrow("jito-staked-sol", "jitosol", "Jito Staked SOL", 160.0), Reason.LIQUID_STAKING),
    (mrow("rocket-pool-eth", "reth", "Rocket Pool ETH", 2200.0), Reason.LIQUID_STAKING),
    (mrow("coinbase-wrapped-staked-eth", "cbeth", "Coinbase Wrapped Staked ETH"), Reason.LIQUID_STAKING),
    (mrow("some-restaked-eth", "xeth", "Some Restaked ETH"), Reason.LIQUID_STAKING),
    (mrow("wrapped-foo", "wfoo", "Wrapped Foo"), Reason.WRAPPED),
    (mrow("brand-new-sol-wrapper", "wsol", "SOL on X"), Reason.WRAPPED),
    (mrow("mystery-doge", "wdoge", "Mystery"), Reason.WRAPPED),
    (mrow("binance-peg-dogecoin", "doge", "Binance-Peg Dogecoin"), Reason.WRAPPED),
    (mrow("first-digital-usd", "fdusd", "First Digital USD", 1.0), Reason.STABLECOIN),
    (mrow("frax", "frax", "Frax", 1.0), Reason.STABLECOIN),
    (mrow("another-dollar", "adol", "Another USD Dollar", 0.995), Reason.STABLECOIN),
    (mrow("xyz-stable", "xusdx", "XYZ", 1.0), Reason.STABLECOIN),
])
def test_classifier_rules(row, reason):
    verdict = classify(row)
    assert verdict is not None and verdict.reason is reason and verdict.rule


@pytest.mark.parametrize("row", [
    mrow("worldcoin-wld", "wld", "Worldcoin"),
    mrow("dogwifcoin", "wif", "dogwifhat"),
    mrow("woo-network", "woo", "WOO"),
    mrow("meme-gold", "mgold", "Meme Gold", 0.001),             # "Gold" meme coin at a meme price
    mrow("another-dollar", "adol", "Another USD Dollar", 1.5),  # "USD" in name but not priced at $1
    mrow("frax-share", "frax", "Frax Share", 2.5),              # governance token that took the symbol
])
def test_classifier_leaves_ordinary_coins_alone(row):
    assert classify(row) is None


def test_every_v1_coin_is_eligible(v1):
    for c in v1.coins:
        assert classify(mrow(c.coingecko_id, c.symbol.lower(), c.coingecko_id.replace("-", " ").title())) is None


def test_manual_exclusion_wins_and_classifier_is_pure():
    rules = dataclasses.replace(DEFAULT_RULES, manual={"dogecoin": "policy: memecoins"})
    row = mrow("dogecoin", "doge", "Dogecoin", 0.18)
    assert classify(row, rules).reason is Reason.MANUAL
    assert "memecoins" in classify(row, rules).rule
    assert classify(row) is None and DEFAULT_RULES.manual == {}


# --- proposing --------------------------------------------------------------------------------


def test_proposal_from_capture_against_v1(rows, v1):
    before = v1_file_sha()
    p = propose_universe(rows, v1, as_of=AS_OF)
    assert (p.version, p.status, p.based_on, p.size) == (V2, "proposed", V1, 30)
    assert p.excluded_reasons() == EXPECTED_EXCLUDED
    assert set(p.coin_ids()) == V1_IN_CAPTURE | ADDED and len(p.coins) == 22
    assert any("only 22 eligible" in w for w in p.warnings)
    assert set(p.diff.added_ids()) == ADDED
    removed = {c.coingecko_id for c in v1.coins} - V1_IN_CAPTURE
    assert set(p.diff.removed_ids()) == removed and len(removed) == 13
    assert all(r.why == "absent from the market data" for r in p.diff.removed)
    # ranked by market cap among eligible coins, not by position or CoinGecko's rank
    ranks = {c.coingecko_id: c.rank for c in p.coins}
    assert [c.rank for c in p.coins] == list(range(1, 23))
    assert ranks["bitcoin"] == 1 and ranks["ripple"] == 3 and ranks["dogecoin"] == 7
    assert ranks["the-open-network"] < ranks["sui"] < ranks["shiba-inu"]
    changes = {c.coingecko_id: (c.old_rank, c.new_rank) for c in p.diff.rank_changes}
    assert changes["ripple"] == (4, 3) and "bitcoin" not in changes
    assert changes["the-open-network"] == (18, ranks["the-open-network"])
    assert v1_file_sha() == before  # proposing never touches the active universe


def test_existing_coins_keep_mappings_new_coins_need_review(rows, v1):
    p = propose_universe(rows, v1, as_of=AS_OF)
    coins = {c.coingecko_id: c for c in p.coins}
    btc = coins["bitcoin"]
    assert (btc.symbol, btc.kraken_altname, btc.kraken_asset_id, btc.needs_mapping_review) == ("BTC", "XBT", "XXBT", False)
    assert btc.kraken_pairs == v1.coin("BTC").kraken_pairs
    doge = coins["dogecoin"]
    assert (doge.symbol, doge.coinapi_asset_id, dict(doge.kraken_pairs), doge.needs_mapping_review) == \
        ("DOGE", "DOGE", {}, True)
    assert {c.coingecko_id for c in p.coins if c.needs_mapping_review} == ADDED


def test_diff_matches_by_coingecko_id_not_symbol(rows, v1):
    impostor = MarketRow("tokamak-network", "ton", "Tokamak Network", None, 9e12, 2.0, 1.0, None)
    fake_ton = dataclasses.replace(next(r for r in rows if r.id == "the-open-network"), market_cap=1.0)
    others = [r for r in rows if r.id != "the-open-network"]
    p = propose_universe([impostor, fake_ton, *others], v1, size=30, as_of=AS_OF)
    assert "tokamak-network" in p.diff.added_ids()
    assert "the-open-network" not in p.diff.added_ids() and "the-open-network" not in p.diff.removed_ids()
    assert p.coins[0].coingecko_id == "tokamak-network" and p.coins[0].symbol == "TON"
    assert any("symbol TON is shared by" in w for w in p.warnings)


def test_smaller_size_removes_with_reasons_and_names_version(rows, v1):
    p = propose_universe(rows, v1, size=5, as_of=AS_OF)
    assert p.version == "UNIVERSE_V2_TOP5_NON_STABLE"
    assert p.coin_ids() == ["bitcoin", "ethereum", "ripple", "binancecoin", "solana"]
    why = {r.coingecko_id: r.why for r in p.diff.removed}
    assert why["cardano"].startswith("ranked 6 ") and why["monero"] == "absent from the market data"
    assert p.diff.added == ()


def test_rows_without_market_cap_are_excluded_not_ranked(v1):
    rows = [mrow("bitcoin", "btc", "Bitcoin", 80000.0, 1.5e12), mrow("ghost", "gho5t", "Ghost", 1.0, None),
            mrow("zero", "zro0", "Zero", 1.0, 0.0)]
    p = propose_universe(rows, v1, as_of=AS_OF)
    assert p.coin_ids() == ["bitcoin"]
    assert p.excluded_reasons() == {"ghost": NO_MARKET_CAP, "zero": NO_MARKET_CAP}


def test_version_naming_and_validation(rows, v1):
    assert next_version(V1, 30) == V2
    assert next_version("UNIVERSE_V9_TOP30_NON_STABLE", 30) == "UNIVERSE_V10_TOP30_NON_STABLE"
    assert propose_universe(rows, v1, proposed_version="UNIVERSE_V2_TEST", as_of=AS_OF).version == "UNIVERSE_V2_TEST"
    with pytest.raises(ConfigError, match="active version"):
        propose_universe(rows, v1, proposed_version=V1, as_of=AS_OF)
    with pytest.raises(ConfigError, match="upper-case"):
        propose_universe(rows, v1, proposed_version="../evil", as_of=AS_OF)
    with pytest.raises(ConfigError, match="timezone"):
        propose_universe(rows, v1, as_of=datetime(2025, 3, 4))


def test_to_json_is_deterministic_and_sorted(rows, v1):
    a = propose_universe(rows, v1, as_of=AS_OF)
    b = propose_universe(list(reversed(rows)), v1, as_of=AS_OF)
    assert a.to_json() == b.to_json()
    doc = json.loads(a.to_json())
    assert list(doc) == sorted(doc)
    assert doc["status"] == "proposed" and doc["as_of"] == "2025-03-04T14:46:00Z"
    assert doc["content_sha256"] == a.to_dict()["content_sha256"]


# --- files, approval --------------------------------------------------------------------------


def test_write_proposal_never_writes_the_active_universe(rows, v1, tmp_path):
    before = v1_file_sha()
    p = propose_universe(rows, v1, as_of=AS_OF)
    path = write_proposal(p, tmp_path)
    assert path == proposal_path(tmp_path, V2) == tmp_path / "proposals" / f"{V2}.json"
    first = path.read_bytes()
    write_proposal(p, tmp_path)
    assert path.read_bytes() == first  # deterministic
    assert sorted(x.relative_to(tmp_path).as_posix() for x in tmp_path.rglob("*.json")) == [f"proposals/{V2}.json"]
    assert list_proposals(tmp_path) == [V2]
    assert load_universe(V1, tmp_path).coins == v1.coins
    with pytest.raises(ConfigError, match="not a known universe version"):
        load_universe(V2, tmp_path)  # a proposal is not a universe until approved
    assert v1_file_sha() == before


def test_approval_round_trip(rows, v1, tmp_path):
    p = propose_universe(rows, v1, as_of=AS_OF, manual_exclusions={"leo-token": "exchange token, policy"})
    path = write_proposal(p, tmp_path)
    assert p.excluded_reasons()["leo-token"] == "MANUAL"
    out = approve_proposal(tmp_path, V2, approver="alice", reason="weekly refresh reviewed", at=AT)
    assert out == tmp_path / f"{V2}.json"
    u = load_universe(V2, tmp_path)
    assert u.status == "active" and u.version == V2 and len(u.coins) == 21
    assert [c.coingecko_id for c in u.coins] == p.coin_ids()
    assert u.coin("BTC").kraken_pairs == v1.coin("BTC").kraken_pairs
    assert u.coin("DOGE").kraken_pairs == {} and u.coin("DOGE").kraken_altname == "DOGE"
    record = json.loads(approval_path(tmp_path, V2).read_text())
    assert record["approved_by"] == "alice" and record["reason"] == "weekly refresh reviewed"
    assert record["approved_at"] == "2025-03-05T09:00:00Z"
    assert record["proposal_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(record["coins_needing_mapping_review"]) == ADDED - {"leo-token"}
    assert load_manual_exclusions(V2, tmp_path) == {"leo-token": "exchange token, policy"}
    assert load_manual_exclusions(V1) == {}
    # the next refresh carries the version's manual list forward
    p3 = propose_universe(rows, u, as_of=AS_OF, manual_exclusions=load_manual_exclusions(V2, tmp_path))
    assert p3.version == "UNIVERSE_V3_TOP30_NON_STABLE" and p3.excluded_reasons()["leo-token"] == "MANUAL"
    assert p3.diff.added == () and p3.diff.removed == ()

    with pytest.raises(ConfigError, match="already approved"):
        approve_proposal(tmp_path, V2, approver="bob", reason="again", at=AT)
    with pytest.raises(ConfigError, match="already approved in"):
        write_proposal(p, tmp_path)


def test_approving_unknown_proposal_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no proposal UNIVERSE_V7_TOP30_NON_STABLE"):
        approve_proposal(tmp_path, "UNIVERSE_V7_TOP30_NON_STABLE", approver="alice", reason="x", at=AT)


def test_approval_requires_who_and_why(rows, v1, tmp_path):
    write_proposal(propose_universe(rows, v1, as_of=AS_OF), tmp_path)
    with pytest.raises(ConfigError, match="approver"):
        approve_proposal(tmp_path, V2, approver=" ", reason="x", at=AT)
    with pytest.raises(ConfigError, match="reason"):
        approve_proposal(tmp_path, V2, approver="alice", reason="", at=AT)


def test_proposal_modified_after_proposing_is_refused(rows, v1, tmp_path):
    path = write_proposal(propose_universe(rows, v1, as_of=AS_OF), tmp_path)
    doc = json.loads(path.read_text())
    doc["coins"][0]["coinapi_asset_id"] = "XBT"
    path.write_text(json.dumps(doc, sort_keys=True, indent=1))
    with pytest.raises(ConfigError, match="modified after it was proposed"):
        approve_proposal(tmp_path, V2, approver="alice", reason="x", at=AT)
    assert not approval_path(tmp_path, V2).exists() and not (tmp_path / f"{V2}.json").exists()
