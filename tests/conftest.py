import robolearn  # noqa: F401  (selects headless rendering before mujoco is imported)
