"""The offline venue: a deterministic simulated market served over HTTP in the real providers' formats
(CoinAPI REST v1, Kraken public REST, CoinGecko v3), with switchable faults."""

from coinline.replay.faults import Fault, FaultPlan
from coinline.replay.market import CandleArrays, Revision, SimulatedMarket
from coinline.replay.server import ReplayServer

__all__ = ["CandleArrays", "Fault", "FaultPlan", "ReplayServer", "Revision", "SimulatedMarket"]
