"""Benchmarks: `make bench` runs every module in BENCHMARKS and prints figures (no assertions)."""
