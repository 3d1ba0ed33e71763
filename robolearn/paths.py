"""Where the repository's Hydra configs live (the top-level `configs/` folder)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO_ROOT / "configs")
