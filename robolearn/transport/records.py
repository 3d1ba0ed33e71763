"""One multipart message as one checksummed byte string: the actor's spill files (one chunk per file).

Record: `u32 length | u32 crc | payload`, payload = `u32 frame count | (u32 length | bytes)*`. The crc covers
the frame count, the frame lengths and the first frame (the message header); image buffers are covered by
their lengths only (checksumming ~0.7 MB per chunk cost as much as writing it), which catch a file cut short.
"""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

_HEAD = struct.Struct("<II")
_U32 = struct.Struct("<I")


def pack_record(frames: Sequence) -> bytes:
    parts = [_U32.pack(len(frames))]
    for frame in frames:
        buf = frame if isinstance(frame, (bytes, bytearray, memoryview)) else frame.buffer
        buf = memoryview(buf).cast("B")
        parts += [_U32.pack(len(buf)), buf]
    crc = _checksum([parts[0], *parts[1::2]], parts[2] if len(parts) > 2 else b"")
    return b"".join([_HEAD.pack(sum(len(p) for p in parts), crc), *parts])


def unpack_record(data: bytes) -> list[bytes]:
    """One record's frames; ValueError if it is damaged or cut short."""
    if len(data) < _HEAD.size:
        raise ValueError("damaged record: shorter than its head")
    length, crc = _HEAD.unpack_from(data, 0)
    if _HEAD.size + length != len(data):
        raise ValueError(f"damaged record: {len(data) - _HEAD.size} payload bytes, its head says {length}")
    view = memoryview(data)[_HEAD.size:]
    (count,) = _U32.unpack_from(view, 0)
    pos, frames, lengths = 4, [], [bytes(view[0:4])]
    for _ in range(count):
        if pos + 4 > length:
            raise ValueError("damaged record: frame lengths run past its end")
        (n,) = _U32.unpack_from(view, pos)
        lengths.append(bytes(view[pos:pos + 4]))
        if pos + 4 + n > length:
            raise ValueError("damaged record: a frame runs past its end")
        frames.append(bytes(view[pos + 4: pos + 4 + n]))
        pos += 4 + n
    if pos != length or _checksum(lengths, frames[0] if frames else b"") != crc:
        raise ValueError("damaged record: checksum mismatch")
    return frames


def _checksum(lengths: list, header) -> int:
    return zlib.crc32(header, zlib.crc32(b"".join(lengths)))
