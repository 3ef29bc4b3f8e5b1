"""The training runtime: precision, prediction loops, determinism, distributed helpers, run records, resume."""
