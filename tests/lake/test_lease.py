"""Two ingesters on one series: the second is refused with a message naming the holder."""

from datetime import UTC, datetime, timedelta

import pytest

from coinline.errors import LeaseHeldError
from coinline.lake import open_lake
from coinline.lake.lease import lease_name, series_lease
from tests.fakes import KEY


def test_second_ingester_on_the_same_series_is_refused(tmp_path):
    lake = open_lake(f"file://{tmp_path}")
    with series_lease(lake, KEY) as holder:
        with pytest.raises(LeaseHeldError, match=holder.split(":")[0]) as info:
            with series_lease(lake, KEY):
                pass
        assert "not writing" in str(info.value) and KEY.label() in str(info.value)
    with series_lease(lake, KEY):  # released: the next ingester gets it
        pass


def test_expired_lease_of_a_dead_ingester_is_taken_over(tmp_path):
    lake = open_lake(f"file://{tmp_path}")
    past = datetime(2020, 1, 1, tzinfo=UTC)
    lake.create_only(lease_name(KEY), {"holder": "dead:1:x", "acquired_at": past.isoformat(),
                                        "expires_at": (past + timedelta(minutes=1)).isoformat()})
    with series_lease(lake, KEY) as holder:
        assert lake.read_json(lease_name(KEY))["holder"] == holder
    assert lake.read_json(lease_name(KEY)) is None


def test_live_lease_held_elsewhere_is_not_stolen(tmp_path):
    lake = open_lake(f"file://{tmp_path}")
    future = datetime.now(UTC) + timedelta(hours=1)
    lake.create_only(lease_name(KEY), {"holder": "other:2:y", "acquired_at": "now", "expires_at": future.isoformat()})
    with pytest.raises(LeaseHeldError, match="other:2:y"):
        with series_lease(lake, KEY):
            pass
    assert lake.read_json(lease_name(KEY))["holder"] == "other:2:y"
