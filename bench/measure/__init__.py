"""Measurement: the one timer, XLA's cost and memory analyses of a compiled program
(with its HLO parsed into per-instruction FLOPs and bytes), the device's measured
and datasheet peaks, the run's environment, and the persistent compilation cache.

Imports only bench.core; knows no model, dataset or config (a compiled program
and its device are all it measures).
"""
