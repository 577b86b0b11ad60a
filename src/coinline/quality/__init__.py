"""Data-quality suites (Great Expectations) for raw ingest batches and the canonical candle view.

    result = validate_candles(table, stage="canonical", known_gaps=gaps, gap_tolerance=0)
    if not result.success:
        raise QualityGateError(result.summary())
"""

from coinline.quality.results import CheckResult, QualityResult
from coinline.quality.suites import SUITE_NAMES, validate_candles

__all__ = ["CheckResult", "QualityResult", "SUITE_NAMES", "validate_candles"]
