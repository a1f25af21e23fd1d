"""The benchmark harness, in wings by job; the command lines sit at this top level.

Each `python -m bench.X` module here (main, cli, ab, compare, analysis,
visualize, convert_keras, overhead, gpu_check) only parses its arguments,
calls one function of a wing and turns the outcome into an exit status. The
wings, from the top down; a wing may import the wings below it, never one
above (pyproject.toml's import-linter contracts, checked by `make test`):

  run       runs a config: the suite's cases, the workdir, the A/B's rounds
  train     epochs, checkpoints, cached features, metric files, Grad-CAM
  workload  what a case runs: model, optimizer, state, the compiled step
  results   the report: its schema, renderings, compare, analysis, plots
            (workload and results are independent of each other)
  profile   a trace of extra steps attributed to HLO ops
  measure   the timer, XLA's costs, memory, the device's peaks
  core      errors, atomic files, logs, devices and processes, signals

configs, input_pipeline and models sit between measure and core: they may use
core only, and measure, profile and results never import them.
"""
