"""Benchmarks: each prints ratios measured side by side in one run (never timed assertions in tests).

Installed with slt-pipe, so `python -m bench.NAME` runs from any directory."""
