"""The wire schema shared by the replay server, actors and learners.

A message is a ZeroMQ multipart: frame 0 is a msgpack header (a map with the schema version `v` and a
`type`), the remaining frames are raw array buffers described by the header's `arrays` list
(`[name, dtype, shape, codec, nbytes_or_offsets]`). Arrays go out as their own buffers, zero-copy; only
a small whitelist of dtypes is accepted and every size is checked against its declared shape, so a
truncated or forged message fails here with a ProtocolError that names the problem. No pickle.

Codecs: `raw` (the array's bytes); `rows`: an array given as a list of N equal rows goes out as N
buffers (an actor's observations are sent straight from the arrays the env returned, never gathered
into one), and decodes to a list of row views; `jpeg`/`png` (uint8 images (N, H, W, 3) encoded one by one
with OpenCV, offsets in the header) for slow links.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

SCHEMA_VERSION = 1
DTYPES = {"uint8", "int32", "int64", "float32", "float64", "bool"}
_ITEMSIZE = {name: np.dtype(name).itemsize for name in DTYPES}
_NAME_OF = {np.dtype(name): name for name in DTYPES}  # dtype.name is computed in Python on every access: costly per chunk
CODECS = {"raw", "rows", "jpeg", "png"}
MAX_HEADER_BYTES = 1 << 20
MAX_DIMS = 6
MAX_DECODED_BYTES = 1 << 28  # an array that declares more (after decompression) is refused before anything is allocated
MAX_IMAGE_SIDE = 4096


class ProtocolError(ValueError):
    """A message that does not follow the schema (wrong version, malformed header, truncated buffers)."""


@dataclass
class Message:
    type: str
    header: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


# -- encoding ----------------------------------------------------------------------------------------
def encode(type_: str, header: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None,
           compress: dict[str, str] | None = None, jpeg_quality: int = 90) -> list:
    """Header dict + arrays -> frames. `compress` maps array names to `jpeg`/`png`."""
    compress = compress or {}
    described, frames = [], []
    for name, array in (arrays or {}).items():
        codec = compress.get(name, "raw")
        if isinstance(array, (list, tuple)):
            if codec == "raw":
                rows = [np.ascontiguousarray(r) for r in array]
                if not rows or any(r.shape != rows[0].shape or r.dtype != rows[0].dtype for r in rows):
                    raise ProtocolError(f"array {name!r}: rows must be a non-empty list of equal shape and dtype")
                if rows[0].dtype.name not in DTYPES:
                    raise ProtocolError(f"array {name!r}: dtype {rows[0].dtype.name} cannot go on the wire (allowed: {sorted(DTYPES)})")
                described.append([name, rows[0].dtype.name, [len(rows), *rows[0].shape], "rows", rows[0].nbytes])
                frames.extend(memoryview(r).cast("B") if r.size else b"" for r in rows)
                continue
            array = np.stack(array)  # compressed images are encoded from one array
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
            array = np.ascontiguousarray(array)
        dtype = _NAME_OF.get(array.dtype)
        if dtype is None:
            raise ProtocolError(f"array {name!r}: dtype {array.dtype.name} cannot go on the wire (allowed: {sorted(DTYPES)})")
        if codec == "raw":
            described.append([name, dtype, list(array.shape), "raw", array.nbytes])
            frames.append(memoryview(array).cast("B") if array.size else b"")
        else:
            blob, offsets = _encode_images(name, array, codec, jpeg_quality)
            described.append([name, dtype, list(array.shape), codec, offsets])
            frames.append(blob)
    head = {"v": SCHEMA_VERSION, "type": type_, **(header or {}), "arrays": described}
    return [msgpack.packb(head, use_bin_type=True), *frames]


def _encode_images(name: str, array: np.ndarray, codec: str, quality: int) -> tuple[bytes, list[int]]:
    import cv2

    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ProtocolError(f"array {name!r}: {codec} needs uint8 images (N, H, W, 3), got {array.dtype} {array.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    parts, offsets, end = [], [], 0
    for image in array:
        ok, buf = cv2.imencode("." + codec, image[..., ::-1], params)  # OpenCV encodes BGR
        if not ok:
            raise ProtocolError(f"array {name!r}: {codec} encoding failed")
        parts.append(buf.tobytes())
        end += len(parts[-1])
        offsets.append(end)
    return b"".join(parts), offsets


# -- decoding ----------------------------------------------------------------------------------------
def decode(frames: Sequence, max_decoded_bytes: int = MAX_DECODED_BYTES) -> Message:
    """Frames (bytes or zmq.Frame) -> Message. Raises ProtocolError with the reason on any defect.

    Every field is checked by type and range before anything is allocated from it: a peer cannot make the
    decoder allocate more than `max_decoded_bytes` per array, whatever its header declares."""
    if not frames:
        raise ProtocolError("empty message")
    raw_head = _buffer(frames[0])
    if len(raw_head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw_head)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        head = msgpack.unpackb(raw_head, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(f"header is not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(head, dict):
        raise ProtocolError(f"header must be a map, got {type(head).__name__}")
    version = head.get("v")
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"schema version {version!r}; this peer speaks version {SCHEMA_VERSION}")
    type_ = head.get("type")
    if not isinstance(type_, str):
        raise ProtocolError("header has no string 'type'")
    described = head.pop("arrays", [])
    if not isinstance(described, list):
        raise ProtocolError("header field 'arrays' must be a list")
    arrays, position = {}, 1
    for entry in described:
        count = _buffers_of(entry)
        if position + count > len(frames):
            raise ProtocolError(f"header describes more buffers than the message carries ({len(frames) - 1})")
        if count == 1 and entry[3] != "rows":
            name, array = _decode_array(entry, _buffer(frames[position]), max_decoded_bytes)
        else:
            name, array = _decode_rows(entry, [_buffer(f) for f in frames[position:position + count]], max_decoded_bytes)
        position += count
        if name in arrays:
            raise ProtocolError(f"array {name!r} appears twice")
        arrays[name] = array
    if position != len(frames):
        raise ProtocolError(f"header describes {position - 1} buffers, message carries {len(frames) - 1}")
    return Message(type_, head, arrays)


def _buffers_of(entry) -> int:
    if not (isinstance(entry, list) and len(entry) == 5):
        raise ProtocolError(f"array entry must be [name, dtype, shape, codec, size], got {entry!r:.200}")
    if not isinstance(entry[3], str) or entry[3] not in CODECS:
        raise ProtocolError(f"array entry {entry!r:.200}: codec must be one of {sorted(CODECS)}")
    if entry[3] != "rows":
        return 1
    shape = entry[2]
    if not (isinstance(shape, list) and shape and isinstance(shape[0], int) and 0 < shape[0] <= 100_000):
        raise ProtocolError(f"array entry {entry!r:.200}: rows need a leading row count")
    return shape[0]


def _decode_rows(entry, buffers, max_decoded_bytes: int) -> tuple[str, list[np.ndarray]]:
    name, dtype, shape, codec, size = entry
    row_entry = [name, dtype, shape[1:], "raw", size]
    return name, [_decode_array(row_entry, buf, max_decoded_bytes)[1] for buf in buffers]


def _decode_array(entry, buf, max_decoded_bytes: int = MAX_DECODED_BYTES) -> tuple[str, np.ndarray]:
    if not (isinstance(entry, list) and len(entry) == 5):
        raise ProtocolError(f"array entry must be [name, dtype, shape, codec, size], got {entry!r:.200}")
    name, dtype, shape, codec, size = entry
    # isinstance first: `in` on a set hashes its operand, and a list or map from the wire is unhashable.
    if not (isinstance(name, str) and len(name) <= 256 and isinstance(dtype, str) and dtype in DTYPES
            and isinstance(codec, str) and codec in CODECS):
        raise ProtocolError(f"array entry {entry!r:.200}: bad name, dtype (allowed {sorted(DTYPES)}) or codec (allowed {sorted(CODECS)})")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(type(d) is int and 0 <= d < 1 << 31 for d in shape)):
        raise ProtocolError(f"array {name!r}: bad shape {shape!r:.200}")
    expected = math.prod(shape) * _ITEMSIZE[dtype]  # plain ints: np.prod cost more than the rest of decoding
    if expected > max_decoded_bytes:
        raise ProtocolError(f"array {name!r}: shape {shape} {dtype} is {expected} bytes, above the limit of {max_decoded_bytes}")
    if codec == "raw":
        if size != expected or len(buf) != expected:
            raise ProtocolError(f"array {name!r}: {len(buf)} bytes for shape {shape} {dtype} (expected {expected}; truncated?)")
        return name, np.frombuffer(buf, dtype=dtype).reshape(shape)
    return name, _decode_images(name, dtype, shape, codec, size, buf)


def _decode_images(name, dtype, shape, codec, offsets, buf) -> np.ndarray:
    import cv2

    if dtype != "uint8" or len(shape) != 4 or shape[-1] != 3:
        raise ProtocolError(f"array {name!r}: {codec} carries uint8 images (N, H, W, 3), header says {dtype} {shape}")
    if not (isinstance(offsets, list) and len(offsets) == shape[0] and all(type(o) is int for o in offsets)
            and all(a < b for a, b in zip([0, *offsets], offsets)) and (not offsets or offsets[-1] == len(buf))):
        raise ProtocolError(f"array {name!r}: {codec} offsets do not match the {len(buf)}-byte buffer")
    if max(shape[1:3]) > MAX_IMAGE_SIDE:
        raise ProtocolError(f"array {name!r}: images of {shape[1]}x{shape[2]} exceed the {MAX_IMAGE_SIDE}-pixel side limit")
    out = np.empty(shape, dtype=np.uint8)
    start = 0
    for i, end in enumerate(offsets):
        blob = buf[start:end]
        # The image's own header is read before decoding: OpenCV would allocate whatever size it declares.
        declared = image_size(blob, codec)
        if declared != (shape[1], shape[2]):
            raise ProtocolError(f"array {name!r}: image {i} declares {declared} pixels, the header says {tuple(shape[1:3])}")
        image = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.shape != tuple(shape[1:]):
            raise ProtocolError(f"array {name!r}: image {i} does not decode to {shape[1:]}")
        out[i] = image[..., ::-1]
        start = end
    return out


def image_size(blob, codec: str) -> tuple[int, int] | None:
    """(height, width) as a PNG or JPEG file declares it, read from its header; None if there is none."""
    data = bytes(blob[:65536]) if codec == "jpeg" else bytes(blob[:24])
    if codec == "png":
        if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):  # walk the markers up to the first start-of-frame
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def _buffer(frame) -> memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return memoryview(frame)
    return frame.buffer  # zmq.Frame received with copy=False


def wire_bytes(frames: Sequence) -> int:
    return sum(len(_buffer(f)) if not isinstance(f, memoryview) else f.nbytes for f in frames)


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order: what binds a set of weights
    to the learner. The server announces the digest of the arrays the learner sent it (over the
    authenticated request channel); an actor applies arrays from the weights port only when they hash to
    the announced digest, so arrays from anyone else (a process that took over the port, a garbled copy)
    are never applied, whatever version they claim. ~10 ms for the 16 MB of the DrQ acting networks."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(msgpack.packb([name, array.dtype.str, list(array.shape)]))
        h.update(array.reshape(-1).view(np.uint8))
    return h.hexdigest()
