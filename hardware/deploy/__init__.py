"""Deploying a policy on the real-robot env: the episodes and their report (`episodes.py`) and the
command (`command.py`, `python -m hardware.deploy`)."""

from hardware.deploy.episodes import CameraVideo, DeployEpisode, DeployReport, run_deployment

__all__ = ["CameraVideo", "DeployEpisode", "DeployReport", "run_deployment"]
