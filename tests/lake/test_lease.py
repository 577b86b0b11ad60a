"""Two ingesters on one series: the second is refused with a message naming the holder."""

from datetime import UTC, datetime, timedelta

import pytest

from coinline.errors import LeaseHeldError
from coinline.lake import open_lake
from coinline.lake.lease import lease_name, series_lease
from tests.fakes import KEY


def test_second_ingester_on_the_same_series_is_refused(tmp_path):
    lake = open_lake(f"file://{tmp_path}")
    with series_lease(lake, KEY) as lease:
        holder = lease.holder
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
    with series_lease(lake, KEY) as lease:
        holder = lease.holder
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


def test_lease_of_a_killed_process_on_this_host_is_reclaimed_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    lake = open_lake(f"file://{tmp_path}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}:x"
    future = datetime.now(UTC) + timedelta(hours=1)
    lake.create_only(lease_name(KEY), {"holder": holder, "acquired_at": "t", "expires_at": future.isoformat()})
    with series_lease(lake, KEY) as lease:
        assert lake.read_json(lease_name(KEY))["holder"] == lease.holder != holder


def test_renew_extends_the_expiry_and_notices_a_takeover(tmp_path):
    lake = open_lake(f"file://{tmp_path}")
    with series_lease(lake, KEY, ttl=timedelta(minutes=1)) as lease:
        before = lake.read_json(lease_name(KEY))["expires_at"]
        lease.renew()
        assert lake.read_json(lease_name(KEY))["expires_at"] >= before
        lake.write_json(lease_name(KEY), {"holder": "thief:1:z", "expires_at": before})
        with pytest.raises(LeaseHeldError, match="thief"):
            lease.renew()
