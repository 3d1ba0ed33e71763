"""Benchmarks: `python -m robolearn.bench NAME [--quick]`; the last stdout line is one JSON object.

Each benchmark measures its own baseline in the same run, because these machines are noisy and the
ratio is what carries over between them.
"""
