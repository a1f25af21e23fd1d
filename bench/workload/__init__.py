"""What a case runs: its model, optimizer, initial (or imported) state and compiled
train, eval or forward step, sharded over the mesh, with its costs recorded;
transfer modes and pretrained weights.

Shared by timing (bench.run) and training (bench.train), so it sits below both.
Imports bench.measure, bench.core, models and input_pipeline; independent of
bench.results.
"""
