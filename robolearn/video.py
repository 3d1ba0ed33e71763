"""mp4 files through imageio's ffmpeg writer (libx264), the one video stack of the project.

Two settings: the eval/deploy videos' (`mp4_writer(path, fps)`: imageio quality 7, i.e. crf 15, 4:2:0,
sizes padded to a multiple of 8: for watching), and dataset frames' (`mp4_writer(path, fps, crf=0,
pix_fmt="yuv444p")`: every pixel kept in place and at full colour resolution, for learning from).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

WATCH_SETTINGS = {"codec": "libx264", "quality": 7, "macro_block_size": 8}


def mp4_writer(path: str | Path, fps: float, crf: int | None = None, pix_fmt: str = "yuv420p"):
    """An imageio writer (`append_data(frame)`, `close()`). Without `crf`: the watching settings above.
    With `crf` (0 = x264's lossless mode; the RGB -> YUV conversion still rounds): frames keep their size
    (macro_block_size 1: imageio would otherwise scale them up to a multiple of 16) in `pix_fmt`."""
    import imageio.v2 as imageio

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if crf is None:
        return imageio.get_writer(str(path), fps=fps, **WATCH_SETTINGS)
    # quality=None: imageio would add its own -crf before ours.
    return imageio.get_writer(str(path), fps=fps, codec="libx264", quality=None, pixelformat=pix_fmt, macro_block_size=1,
                              ffmpeg_params=["-crf", str(int(crf))], ffmpeg_log_level="error")


def read_mp4(path: str | Path) -> Iterator[np.ndarray]:
    """The frames of an mp4 as uint8 (H, W, 3) RGB arrays, in order."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        yield from reader
    finally:
        reader.close()
