"""Benchmarks as data, each with its own semantics, one module per family.

Loaded through :func:`idfu_lab.problems.load_benchmark`, which knows every benchmark by name.
"""
