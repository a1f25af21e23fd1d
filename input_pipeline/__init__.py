"""Datasets by name and their placement on devices."""
