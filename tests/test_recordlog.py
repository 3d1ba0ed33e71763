"""The write-ahead log's segments: rolling over, recycling retired segments, and what recovery reads back."""

import pytest

from robolearn.transport.recordlog import RecordLog


def record(i: int) -> list[bytes]:
    return [f"header {i:04d}".encode(), bytes([i % 256]) * 1000]  # every record the same size: old ones align with new


def write(log: RecordLog, ids, keep_segments: int = 2) -> None:
    for i in ids:
        log.append(record(i))
        for old in log.segments()[:-keep_segments]:
            log.remove(old)


@pytest.mark.parametrize("fsync", [False, True])
def test_retired_segments_are_recycled_and_their_old_records_never_come_back(tmp_path, fsync):
    log = RecordLog(tmp_path, segment_bytes=5_000, fsync=fsync)  # four records per segment
    write(log, range(40))
    assert log.recycled >= 5 and len(list(tmp_path.glob("spare-*.log"))) <= 2
    # A crash while writing a recycled segment: it still holds its previous life's records past the new ones
    # (same sizes, so they sit exactly where the next record would). Nothing calls close().
    log.append(record(40))
    assert (tmp_path / f"segment-{log.current:08d}.log").stat().st_size > 1_100  # the old records are there
    replayed = [frames for _, frames in RecordLog(tmp_path, segment_bytes=5_000).replay()]
    ids = [int(frames[0].split()[1]) for frames in replayed]
    assert ids == list(range(ids[0], 41)) and ids[0] <= 36  # in order, the two newest segments, nothing stale
    assert replayed[-1] == record(40)


def test_a_log_reopened_after_a_clean_close_continues_its_last_segment(tmp_path):
    log = RecordLog(tmp_path, segment_bytes=5_000)
    write(log, range(10))
    log.close()
    again = RecordLog(tmp_path, segment_bytes=5_000)
    assert [int(f[0].split()[1]) for _, f in again.replay()] == list(range(4, 10))
    write(again, range(10, 13))
    again.close()
    assert [int(f[0].split()[1]) for _, f in RecordLog(tmp_path).replay()][-4:] == [9, 10, 11, 12]
