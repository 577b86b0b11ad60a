"""Gap detection and resume planning on the interval grid (pure)."""

from datetime import UTC, datetime, timedelta

import numpy as np

from coinline.ingest.grid import find_gaps, ranges_to_fetch

H = 3_600_000
T = datetime(2024, 1, 1, tzinfo=UTC)


def test_find_gaps_reports_each_hole_with_its_size():
    times = np.array([0, 1, 2, 5, 6, 9]) * H
    assert find_gaps(times, H) == [(3 * H, 5 * H, 2), (7 * H, 9 * H, 2)]
    assert find_gaps(np.array([0, 1, 2]) * H, H) == []


def test_empty_series_fetches_from_earliest_to_end():
    assert ranges_to_fetch(None, None, T, T + timedelta(days=1), "1h") == [(T, T + timedelta(days=1))]


def test_resume_fetches_only_what_is_missing_at_head_and_tail():
    first, last = T + timedelta(hours=10), T + timedelta(hours=20)
    end = T + timedelta(hours=30)
    assert ranges_to_fetch(first, last, T, end, "1h") == [(T, first), (last + timedelta(hours=1), end)]
    assert ranges_to_fetch(T, end - timedelta(hours=1), T, end, "1h") == []
