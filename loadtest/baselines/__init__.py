"""Baselines the benchmark compares Triton against: the seed-style Flask + joblib server."""
