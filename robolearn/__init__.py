"""robolearn core: the environment contract, policies, evaluation and benchmarks.

It never imports `sim` or `hardware`: configs name the env factory, and launchers wire pieces together.
"""

__version__ = "0.1.0"
