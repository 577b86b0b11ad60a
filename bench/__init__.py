"""coinline benchmarks (`make bench` = `python -m bench.run_all`): ratios against references measured
in the same run, plus absolute figures; nothing is asserted. See bench/run_all.py."""
