"""Where a step's time goes: a profiler trace of extra steps after the timed ones,
its time attributed to the compiled program's ops, each op categorised (convolution
forward, input or kernel gradient, dot, pooling, ...) and joined with its Flax
layer and phase.

Imports bench.measure (the HLO parser, the timer) and bench.core.
"""
