"""Causal features (per coin and cross-asset), forward targets, frame assembly and the look-ahead check."""

from coinline.features.cross_asset import cross_asset_feature_names, cross_asset_features
from coinline.features.frame import CoinFrame, build_coin_frames, candles_frame, target_vol_window, valid_rows
from coinline.features.lookahead import LookaheadReport, Violation, default_cut_times, lookahead_check
from coinline.features.targets import make_targets, target_names
from coinline.features.windows import coin_feature_names, coin_features

__all__ = [
    "CoinFrame", "LookaheadReport", "Violation", "build_coin_frames", "candles_frame", "coin_feature_names",
    "coin_features", "cross_asset_feature_names", "cross_asset_features", "default_cut_times",
    "lookahead_check", "make_targets", "target_names", "target_vol_window", "valid_rows",
]
