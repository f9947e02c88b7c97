"""Benchmarks the project writes itself (``mini``), registered through :func:`idfu_lab.problems.load_problems`."""
