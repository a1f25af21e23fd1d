"""Benchmark harness: runner, timer, costs, report."""
