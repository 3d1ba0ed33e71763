"""Spill records: what goes in comes out, and damage is detected rather than decoded."""

import pytest

from robolearn.transport.records import pack_record, unpack_record


def test_a_record_round_trips_and_any_cut_or_damaged_header_is_refused():
    frames = [b"header", bytes(range(256)) * 4, b""]
    data = pack_record(frames)
    assert unpack_record(data) == frames
    for cut in (0, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(ValueError, match="damaged"):
            unpack_record(data[:cut])
    damaged = bytearray(data)
    damaged[data.index(b"header")] ^= 0xFF
    with pytest.raises(ValueError, match="checksum"):
        unpack_record(bytes(damaged))
