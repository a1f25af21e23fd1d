"""The report and what reads it: the schema (the one module that knows its field
names and version), report.md and report.csv, compare, the analysis of what
predicts step time (proxies, a roofline, the kernel predictions a run recorded
beside proxies judged on model families they never saw), the kernel database and
its learned predictors, the plots, the history, and the A/B's statistics and record.

Reads reports as plain data, without jax: imports bench.profile (op categories,
for plots) and bench.core; independent of bench.workload.
"""
