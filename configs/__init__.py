"""Benchmark configs: `get_config()` files; variants import base and override fields."""
