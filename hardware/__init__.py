"""Hardware-abstraction layer: robot drivers, cameras, safety layer and the real-robot env.

It implements the same environment contract as `sim` (see `robolearn.spec`), using the shared robot
descriptions in `robolearn.robots` and the shared task code in `robolearn.task`.
"""
