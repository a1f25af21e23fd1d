"""Training runs: epochs with an exact evaluation after each, through the one timer;
early stopping, divergence, checkpoints and resume, cached backbone features,
TensorBoard and JSONL metrics, and what a trained case sees (Grad-CAM).

Imports bench.workload, bench.results (the report's history keys), bench.measure
and bench.core.
"""
