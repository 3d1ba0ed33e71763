"""An append-only log of multipart messages in segment files: the replay server's write-ahead log.

Record: `u32 payload length | u32 crc32 | payload`, payload = `u32 frame count | (u32 length | bytes)*`.
A record is written with one `os.write` before the server acknowledges it, so a kill -9 loses nothing
acknowledged (the bytes are in the OS page cache); `fsync=True` also survives power loss, at a cost per
message. A crash mid-write leaves a short or mis-checksummed tail, which recovery detects and drops
(that message was never acknowledged).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)
_HEAD = struct.Struct("<II")
_U32 = struct.Struct("<I")


def _segment_name(index: int) -> str:
    return f"segment-{index:08d}.log"


class RecordLog:
    def __init__(self, directory: str | Path, segment_bytes: int = 256 << 20, fsync: bool = False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes, self.fsync = int(segment_bytes), fsync
        self._fd: int | None = None
        self._size = 0
        existing = self.segments()
        self.current = existing[-1] if existing else 0

    def segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("segment-*.log"))

    def path(self, index: int) -> Path:
        return self.dir / _segment_name(index)

    # -- writing -------------------------------------------------------------------------------------
    def append(self, frames: Sequence) -> int:
        """Write one record; returns the segment it went to."""
        record = pack_record(frames)
        if self._fd is None or self._size + len(record) > self.segment_bytes and self._size > 0:
            self._open_next()
        written = os.write(self._fd, record)
        if written != len(record):
            raise OSError(f"short write to {self.path(self.current)} ({written} of {len(record)} bytes)")
        self._size += len(record)
        if self.fsync:
            os.fsync(self._fd)
        return self.current

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self.current += 1
        self._fd = os.open(self.path(self.current), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def remove(self, index: int) -> None:
        if index == self.current and self._fd is not None:
            raise ValueError("cannot remove the segment being written")
        self.path(index).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading -------------------------------------------------------------------------------------
    def replay(self) -> Iterator[tuple[int, list[bytes]]]:
        """Every intact record in order, as (segment, frames). A damaged tail is cut off the file."""
        for index in self.segments():
            path = self.path(index)
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                frames = _parse(data, offset)
                if frames is None:
                    log.warning("%s: dropping %d bytes of a partial record at offset %d (a crash mid-write; never acknowledged)",
                                path, len(data) - offset, offset)
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                    break
                offset, record = frames
                yield index, record


def pack_record(frames: Sequence) -> bytes:
    parts = [_U32.pack(len(frames))]
    for frame in frames:
        buf = frame if isinstance(frame, (bytes, bytearray, memoryview)) else frame.buffer
        parts += [_U32.pack(buf.nbytes if isinstance(buf, memoryview) else len(buf)), buf]
    payload = b"".join(parts)
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def unpack_record(data: bytes) -> list[bytes]:
    """One record's frames; ValueError if it is damaged."""
    parsed = _parse(data, 0)
    if parsed is None or parsed[0] != len(data):
        raise ValueError("damaged record")
    return parsed[1]


def _parse(data: bytes, offset: int) -> tuple[int, list[bytes]] | None:
    if offset + _HEAD.size > len(data):
        return None
    length, crc = _HEAD.unpack_from(data, offset)
    start, end = offset + _HEAD.size, offset + _HEAD.size + length
    if end > len(data) or zlib.crc32(data[start:end]) != crc:
        return None
    view = memoryview(data)[start:end]
    (count,) = _U32.unpack_from(view, 0)
    pos, frames = 4, []
    for _ in range(count):
        (n,) = _U32.unpack_from(view, pos)
        frames.append(bytes(view[pos + 4: pos + 4 + n]))
        pos += 4 + n
    return end, frames
