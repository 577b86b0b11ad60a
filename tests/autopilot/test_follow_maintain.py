"""`follow` maintains the lake once `maintain_every` has passed: the first follower starts the clock, a later
cycle compacts (the cycle report names the record), and a failing maintenance never stops the cycle."""

from datetime import timedelta

from coinline.app import build_app
from coinline.autopilot import follow, summary_line
from coinline.lake import maintain as mt
from coinline.lake import tables
from coinline.lake.lease import series_lease
from tests.autopilot.test_follow import NOW, FakeClock, _settings


def test_follow_maintains_the_lake_when_due_and_reports_it(tmp_path):
    clock = FakeClock(NOW)   # cycles at 12:30, 13:00:05, 14:00:10
    with build_app(_settings(tmp_path, enable_autonomous_retraining=False), now=NOW) as app:
        reports = follow(app, clock=clock, sleep=clock.sleep, max_cycles=3, symbols=["BTC"],
                         maintain_every=timedelta(hours=1))
        assert ["maintenance" in r for r in reports] == [False, False, True]
        done = reports[2]["maintenance"]
        record = app.lake.read_json(done["record"])
        raw = next(t for t in record["tables"] if t["table"] == tables.RAW)
        assert raw["before"]["active_files"] == 3 and raw["after"]["active_files"] == 1   # backfill + 2 syncs
        assert app.lake.read_json("autopilot/state.json")["last_maintenance_at"] == reports[2]["now"]
        assert f"lake maintained ({done['record']})" in summary_line(reports[2])


def test_a_held_maintenance_lease_is_reported_and_the_cycle_goes_on(tmp_path):
    clock = FakeClock(NOW)
    with build_app(_settings(tmp_path, enable_autonomous_retraining=False), now=NOW) as app:
        with series_lease(app.lake, mt.MAINTENANCE_LEASE):
            reports = follow(app, clock=clock, sleep=clock.sleep, max_cycles=2, symbols=["BTC"],
                             maintain_every=timedelta(0))
        assert "another `coinline maintain`" in reports[1]["maintenance"]["error"]
        assert reports[1]["ingest"]["inserted"] == 1
        assert "last_maintenance_at" in app.lake.read_json("autopilot/state.json")   # the first cycle's clock start


def test_follow_without_a_cadence_never_maintains(tmp_path):
    clock = FakeClock(NOW)
    with build_app(_settings(tmp_path, enable_autonomous_retraining=False), now=NOW) as app:
        reports = follow(app, clock=clock, sleep=clock.sleep, max_cycles=2, symbols=["BTC"], maintain_every=None)
        assert not any("maintenance" in r for r in reports)
        assert app.lake.list(mt.RECORDS) == []
