"""Connecting to a Ray cluster: a head that refuses to start this driver's Ray Client server (an intermittent
upstream failure, ray-project/ray#63202) is asked again a bounded number of times, each retry logged; a
refusal that persists, or one from a GCS address, reaches the caller as it came."""

import logging

import pytest
import ray

from coinline.training import executor

REFUSAL = ConnectionAbortedError("Initialization failure from server:\nTraceback ... psutil.ZombieProcess")


def _init_failing(times: int, calls: list):
    def init(**kwargs):
        calls.append(kwargs["address"])
        if len(calls) <= times:
            raise REFUSAL

    return init


def test_a_refused_ray_client_start_is_tried_again_and_logged(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(ray, "init", _init_failing(2, calls))
    with caplog.at_level(logging.WARNING, logger="coinline"):
        executor.connect("ray://head:10001", attempts=3, pause_s=0)
    assert calls == ["ray://head:10001"] * 3
    retries = [r.getMessage() for r in caplog.records if "did not start a client server" in r.getMessage()]
    assert len(retries) == 2
    assert "ray://head:10001" in retries[0] and "attempt 1 of 3" in retries[0] and "attempt 2 of 3" in retries[1]
    assert "Initialization failure from server" in retries[0]


def test_a_refusal_that_persists_is_raised_after_the_last_attempt(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "init", _init_failing(10, calls))
    with pytest.raises(ConnectionAbortedError, match="Initialization failure from server"):
        executor.connect("ray://head:10001", attempts=3, pause_s=0)
    assert len(calls) == 3


def test_a_gcs_address_is_not_retried(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "init", _init_failing(1, calls))
    with pytest.raises(ConnectionAbortedError):
        executor.connect("10.0.0.5:6379", attempts=3, pause_s=0)
    assert calls == ["10.0.0.5:6379"]


def test_other_failures_are_not_retried(monkeypatch):
    calls = []

    def init(**kwargs):
        calls.append(kwargs["address"])
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(ConnectionError, match="timeout"):
        executor.connect("ray://head:10001", attempts=3, pause_s=0)
    assert len(calls) == 1
