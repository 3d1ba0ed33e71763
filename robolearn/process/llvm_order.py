"""Load triton's LLVM before Mesa's.

Mesa's llvmpipe (our headless EGL renderer) and triton (which torch imports for `torch._dynamo`, even
just to build an optimiser) each bring their own LLVM. Loaded in the order Mesa first, triton second,
the process segfaults inside triton's import; the other order works. Call this before the first EGL
context or dm_control import in any process that may also use torch.
"""

from __future__ import annotations

import importlib.util


def load_triton_first() -> None:
    if importlib.util.find_spec("torch") is None:
        return
    try:
        import torch._dynamo  # noqa: F401  (imports triton when it is installed)
    except ImportError:
        pass
