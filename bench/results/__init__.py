"""The report and what reads it: the schema (the one module that knows its field
names and version), report.md and report.csv, compare, the analysis of what
predicts step time (proxies, a roofline, the cost model of the compiled ops judged
on model families it never saw), the plots, and the A/B's statistics and record.

Reads reports as plain data, without jax: imports bench.profile (op categories,
for plots) and bench.core; independent of bench.workload.
"""
