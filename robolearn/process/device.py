"""Which torch device a run uses."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """`auto`: cuda when present, else cpu; any other name is torch's."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
