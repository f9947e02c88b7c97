"""Benchmarks as data, each with its own semantics, one module per family: ``mini`` (the miniature's
benchmark, written by the package), ``evalplus`` (HumanEval+/MBPP+ with EvalPlus's semantics, and MBPP's
test split), ``suites`` (problems judged by several test sets).

Loaded through :func:`idfu_lab.problems.load_benchmark`, which knows every benchmark by name.
"""
