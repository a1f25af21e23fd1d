"""Running things: a config expanded into cases, each case built, timed (or trained),
costed and reported into a workdir that a rerun continues; the A/B's rounds in git
worktrees; the GPU check's parts; the harness's overhead against a bare loop.

The top wing: imports every other (train, workload, results, profile, measure,
core). Only the command lines above it import it.
"""
