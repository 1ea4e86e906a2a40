"""Benchmark scripts (run them as ``python benchmarks/NAME.py``); the code they share lives in ``timm_inti``."""
