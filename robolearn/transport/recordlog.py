"""An append-only log of multipart messages in segment files: the replay server's write-ahead log.

Record: `u32 length | u32 crc | payload`, payload = `u32 frame count | (u32 length | bytes)*`. The crc
covers the frame count, the frame lengths and the first frame (the message header); image buffers are
covered by their lengths only: checksumming ~0.7 MB per chunk cost as much as writing it, and a kill -9
can only cut the file short, which the lengths detect.

A record is written with one `os.writev` before the server acknowledges it, so a kill -9 loses nothing
acknowledged (the bytes are in the OS page cache); `fsync=True` also survives power loss, at a cost per
message. A crash mid-write leaves a short tail, which recovery detects and drops (that message was never
acknowledged).

Removed segments are recycled: renamed to a spare and later renamed into the next segment and overwritten
in place. Writing into pages the OS already caches is ~14x faster here than growing a fresh file (measured:
1.4 ms vs 0.1 ms per 0.7 MB chunk; every new page-cache page is a fault on this VM), and a server whose log
keeps a replay capacity writes that much forever. Each record's crc is salted with its segment's index, so
the old records a recycled segment still holds past the new ones never pass for current.
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
    def __init__(self, directory: str | Path, segment_bytes: int = 256 << 20, fsync: bool = False, spares: int = 2):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes, self.fsync, self.max_spares = int(segment_bytes), fsync, spares
        self._fd: int | None = None
        self._size = 0
        existing = self.segments()
        self.current = existing[-1] if existing else 0
        self.recycled = 0  # segments started in a spare's pages

    def segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.dir.glob("segment-*.log"))

    def path(self, index: int) -> Path:
        return self.dir / _segment_name(index)

    # -- writing -------------------------------------------------------------------------------------
    def append(self, frames: Sequence) -> int:
        """Write one record; returns the segment it went to."""
        if self._fd is None:
            self._open(self.current, continue_at_end=True)
        parts = record_parts(frames, salt=self.current)
        size = sum(len(p) for p in parts)
        if self._size + size > self.segment_bytes and self._size > 0:
            self._close_current()
            self.current += 1
            self._open(self.current, continue_at_end=False)
            parts = record_parts(frames, salt=self.current)
        written = os.writev(self._fd, parts)  # the frames as they are: no joined copy
        if written != size:
            raise OSError(f"short write to {self.path(self.current)} ({written} of {size} bytes)")
        self._size += size
        if self.fsync:
            os.fsync(self._fd)
        return self.current

    def _open(self, index: int, continue_at_end: bool) -> None:
        path = self.path(index)
        spare = None if continue_at_end or path.exists() else next(iter(self._spares()), None)
        if spare is not None:
            os.replace(spare, path)  # its pages are still cached: overwritten in place, from the start
            self.recycled += 1
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._size = os.lseek(self._fd, 0, os.SEEK_END) if spare is None else 0
        os.lseek(self._fd, self._size, os.SEEK_SET)
        if self.fsync and (created or spare is not None):
            self._fsync_dir()  # the segment's name must survive a power loss as surely as the records in it

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_current(self) -> None:
        os.ftruncate(self._fd, self._size)  # a recycled segment's old records end here
        os.close(self._fd)
        self._fd = None

    def _spares(self) -> list[Path]:
        return sorted(self.dir.glob("spare-*.log"))

    def remove(self, index: int) -> None:
        """Retire a segment: kept as a spare for recycling (up to `spares` of them), deleted beyond that."""
        if index == self.current and self._fd is not None:
            raise ValueError("cannot remove the segment being written")
        path = self.path(index)
        if len(self._spares()) < self.max_spares and path.exists():
            os.replace(path, self.dir / f"spare-{index:08d}.log")
        else:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            self._close_current()

    # -- reading -------------------------------------------------------------------------------------
    def replay(self) -> Iterator[tuple[int, list[bytes]]]:
        """Every intact record in order, as (segment, frames). A damaged tail is cut off the file: a partial
        write, or, in a recycled segment the server did not close, its old records."""
        for index in self.segments():
            path = self.path(index)
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                frames = _parse(data, offset, salt=index)
                if frames is None:
                    log.warning("%s: dropping %d bytes after the last intact record at offset %d (a crash mid-write, "
                                "never acknowledged, or a recycled segment's old records)", path, len(data) - offset, offset)
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                    break
                offset, record = frames
                yield index, record


def record_parts(frames: Sequence, salt: int = 0) -> list:
    """A record as a list of buffers (head, then the payload's pieces), for os.writev. `salt` enters the crc."""
    parts = [_U32.pack(len(frames))]
    for frame in frames:
        buf = frame if isinstance(frame, (bytes, bytearray, memoryview)) else frame.buffer
        buf = memoryview(buf).cast("B")
        parts += [_U32.pack(len(buf)), buf]
    return [_HEAD.pack(sum(len(p) for p in parts), _checksum([parts[0], *parts[1::2]], parts[2] if len(parts) > 2 else b"", salt)), *parts]


def _checksum(lengths: list, header, salt: int) -> int:
    return zlib.crc32(header, zlib.crc32(b"".join(lengths), salt & 0xFFFFFFFF))


def pack_record(frames: Sequence) -> bytes:
    return b"".join(record_parts(frames))


def unpack_record(data: bytes) -> list[bytes]:
    """One record's frames; ValueError if it is damaged."""
    parsed = _parse(data, 0)
    if parsed is None or parsed[0] != len(data):
        raise ValueError("damaged record")
    return parsed[1]


def _parse(data: bytes, offset: int, salt: int = 0) -> tuple[int, list[bytes]] | None:
    if offset + _HEAD.size > len(data):
        return None
    length, crc = _HEAD.unpack_from(data, offset)
    start, end = offset + _HEAD.size, offset + _HEAD.size + length
    if end > len(data):
        return None
    view = memoryview(data)[start:end]
    (count,) = _U32.unpack_from(view, 0)
    pos, frames, lengths = 4, [], [bytes(view[0:4])]
    for _ in range(count):
        if pos + 4 > length:
            return None
        (n,) = _U32.unpack_from(view, pos)
        lengths.append(bytes(view[pos:pos + 4]))
        if pos + 4 + n > length:
            return None
        frames.append(bytes(view[pos + 4: pos + 4 + n]))
        pos += 4 + n
    if pos != length or _checksum(lengths, frames[0] if frames else b"", salt) != crc:
        return None
    return end, frames
