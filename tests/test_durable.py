"""The replay server's storage in mapped files: what a restart finds after a clean stop or a kill mid-chunk."""

import numpy as np
import pytest

from robolearn.transport.chunks import ChunkBuilder
from robolearn.replay.config import ServerConfig
from robolearn.replay.durable import DurableReplay
from robolearn.replay import ReplayFormatError
from robolearn.transport.actor_client import ActorClient
from tests.transport_cases import ACTION, SPACE, action, observation, running_server, stream_episodes, transport

pytestmark = pytest.mark.timeout(60)


def stored_ids(store, from_row: int = 0) -> list[int]:
    """Rewards of the stored transitions (reward = id of the next observation), of rows from `from_row` on."""
    slots = np.arange(max(store.oldest, from_row), store.total) % store.capacity
    return sorted(store.reward[slots][store.next[slots] >= 0].astype(int).tolist())


def chunks(episodes: int, length: int, per_chunk: int = 4) -> list[dict]:
    """An actor's chunks: episodes whose observation ids (and rewards) count up from 0."""
    builder, out, i = ChunkBuilder(SPACE, ACTION), [], 0
    for _ in range(episodes):
        builder.start(observation(i))
        for t in range(length):
            i += 1
            builder.step(action(i), float(i), False, t == length - 1, observation(i), 0)
            if len(builder) >= per_chunk or t == length - 1:
                out.append(builder.take())
        i += 1
    return out


def assert_whole(store, frame_stack: int = 3) -> None:
    """Every stored transition's observations, stacked frames and next observation belong together."""
    batch = store.sample(256, np.random.default_rng(0), frame_stack=frame_stack)
    ids = batch.reward.astype(int)
    np.testing.assert_array_equal(batch.next_obs["joint_pos"][:, 0], ids)
    np.testing.assert_array_equal(batch.obs["joint_pos"][:, 0], ids - 1)
    cams = batch.obs["cam"][:, :, 0, 0, 0].astype(int)  # (B, frames): each frame is its predecessor + 1, or a repeat
    assert np.all((cams[:, 1:] - cams[:, :-1]) % 256 <= 1)
    np.testing.assert_array_equal(cams[:, -1], (ids - 1) % 256)


# Room to spare; full and turning over (the oldest rows evicted); the same with fsync (msync + fsync per chunk).
@pytest.mark.parametrize("capacity, fsync", [(10_000, False), (50, False), (50, True)])
def test_a_kill_in_the_middle_of_a_chunk_keeps_every_acknowledged_transition(tmp_path, capacity, fsync):
    cfg = ServerConfig(capacity=capacity, demo_capacity=100, fsync=fsync)
    stream = chunks(episodes=6, length=10)
    reference = DurableReplay(tmp_path / "reference", SPACE, ACTION, cfg)
    for seq, chunk in enumerate(stream):
        reference.accept("a", seq, False, chunk)
    last = len(stream) - 2  # a chunk in the middle of an episode: it links from the row before it
    assert stream[last]["kind"][0] == 1
    crashed = DurableReplay(tmp_path / "crashed", SPACE, ACTION, cfg)
    for seq, chunk in enumerate(stream[:last]):
        crashed.accept("a", seq, False, chunk)
    acknowledged = stored_ids(crashed.storage)
    # Rows whose slots the interrupted chunk overwrites (capacity 50: its oldest rows) cannot be kept.
    kept = stored_ids(crashed.storage, from_row=crashed.storage.total + len(stream[last]["kind"]) - capacity)
    assert len(kept) < len(acknowledged) if capacity == 50 else kept == acknowledged
    # The next chunk is written into the mapped store in full, links and evictions included, and the server
    # dies before its state is written (so before it is acknowledged): the worst point to be killed at.
    crashed.state_file.write_intent("online", crashed.storage.total + len(stream[last]["kind"]))
    crashed.storage.extend_records(crashed.streams["a"], stream[last])
    crashed.close()  # its lock goes, as with the process

    restarted = DurableReplay(tmp_path / "crashed", SPACE, ACTION, cfg)
    assert restarted.next_seq == {"a": last}  # the actor resends the chunk that was being stored
    assert stored_ids(restarted.storage) == kept and restarted.storage.num_transitions() == len(kept)
    assert_whole(restarted.storage)
    for seq in range(last, len(stream)):  # the resend and what followed: the same store as without the kill
        restarted.accept("a", seq, False, stream[seq])
    assert stored_ids(restarted.storage) == stored_ids(reference.storage)
    assert restarted.storage.total == reference.storage.total and restarted.storage.num_transitions() == reference.storage.num_transitions()
    assert_whole(restarted.storage)
    for data in (reference, restarted):
        data.close()


def test_a_full_store_keeps_its_size_and_a_restart_finds_the_newest_capacity(tmp_path):
    cfg = transport()
    server_cfg = ServerConfig(capacity=50)
    with running_server(tmp_path, cfg, server_cfg) as server:
        actor = ActorClient(cfg, SPACE, ACTION, name="a")
        stream_episodes(actor, episodes=3, length=10)
        assert actor.close(timeout_s=10)
        sizes = {p.name: p.stat().st_size for p in (tmp_path / "store").iterdir()}
        actor = ActorClient(cfg, SPACE, ACTION, name="a")
        stream_episodes(actor, episodes=20, length=10, first_id=1000)
        assert actor.close(timeout_s=15)
        live = stored_ids(server.storage)
        assert server.storage.total > 4 * 50
    assert {p.name: p.stat().st_size for p in (tmp_path / "store").iterdir()} == sizes
    recovered = DurableReplay(tmp_path, SPACE, ACTION, server_cfg)
    # The second actor under the same name numbered its chunks on from the first one's.
    assert stored_ids(recovered.storage) == live and recovered.next_seq == {"a": actor._seq_offset + actor._seq}
    assert_whole(recovered.storage, frame_stack=2)
    recovered.close()


def test_a_store_made_for_another_capacity_or_spec_is_refused_with_the_reason(tmp_path):
    DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100)).close()
    with pytest.raises(ReplayFormatError, match="capacity"):
        DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=200))
    with pytest.raises(ReplayFormatError, match="spec"):
        DurableReplay(tmp_path, SPACE, (3,), ServerConfig(capacity=100))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "wal").mkdir()
    with pytest.raises(ReplayFormatError, match="write-ahead log"):
        DurableReplay(tmp_path / "old", SPACE, ACTION, ServerConfig(capacity=100))


def test_demos_given_at_the_first_start_are_kept_in_the_store_and_not_loaded_twice(tmp_path):
    from robolearn.replay import ReplayStorage

    demos = ReplayStorage(SPACE, ACTION, 100)
    demos.start_episode(observation(0))
    for i in range(1, 6):
        demos.add(action(i), float(i), False, i == 5, observation(i))
    data = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100, demo_capacity=100), demos)
    assert stored_ids(data.demos) == [1, 2, 3, 4, 5]
    data.close()
    again = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100, demo_capacity=100), demos)
    assert stored_ids(again.demos) == [1, 2, 3, 4, 5] and again.demos.episodes_added == 1
    again.close()


def test_the_store_reserves_disk_as_it_fills_and_refuses_to_start_without_room_for_the_first_rows(tmp_path, monkeypatch):
    from robolearn.replay.durable import reserve_step

    cfg = ServerConfig(capacity=4_096, demo_capacity=100)
    data = DurableReplay(tmp_path / "roomy", SPACE, ACTION, cfg)
    cam = tmp_path / "roomy" / "store" / "obs_cam.npy"
    row = 12 * 12 * 3
    step = reserve_step(cfg.capacity)
    allocated = lambda: cam.stat().st_blocks * 512
    assert step * row <= allocated() < cam.stat().st_size // 2  # reserved ahead of the data, not for the whole capacity
    episodes = chunks(2 * step // 21 + 1, 20, per_chunk=20)  # one chunk an episode: 21 rows
    for seq, arrays in enumerate(episodes):  # writing past the reservation reserves the next rows first (no SIGBUS)
        data.accept("a", seq, False, arrays)
    assert data.storage.total > 2 * step
    assert allocated() >= (data.storage.total + step) * row * 0.99
    data.close()

    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))  # 1 MB free
    with pytest.raises(RuntimeError, match="not enough disk space .* lower server.capacity"):
        DurableReplay(tmp_path / "cramped", SPACE, ACTION, ServerConfig(capacity=1_000_000))
    assert not (tmp_path / "cramped" / "store").exists()
    DurableReplay(tmp_path / "roomy", SPACE, ACTION, cfg).close()  # an existing store needs no room


def test_a_full_disk_refuses_the_chunk_and_keeps_what_was_stored(tmp_path, monkeypatch):
    import errno
    import os

    from robolearn.replay.durable import StoreFull

    data = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=4_096, demo_capacity=100))
    episodes = chunks(60, 20, per_chunk=20)  # 1,260 rows: past the first reservation (256 + 21)
    data.accept("a", 0, False, episodes[0])
    before = data.storage.num_transitions()

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    seq, total = 1, data.storage.total
    with pytest.raises(StoreFull, match="disk .* is full"):
        while True:
            data.accept("a", seq, False, episodes[seq])
            seq, total = seq + 1, data.storage.total
    stored = data.storage.num_transitions()
    assert data.next_seq["a"] == seq and stored >= before and data.storage.total == total  # the refused chunk left nothing
    data.close()
    monkeypatch.undo()
    again = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=4_096, demo_capacity=100))
    assert again.next_seq["a"] == seq and again.storage.num_transitions() == stored
    again.close()


def test_a_second_server_on_the_same_directory_is_refused(tmp_path):
    first = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100))
    with pytest.raises(RuntimeError, match="another replay server is using"):
        DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100))
    first.close()
    DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100)).close()


def test_a_store_whose_files_were_deleted_starts_empty_instead_of_trusting_the_state(tmp_path):
    data = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100))
    for seq, chunk in enumerate(chunks(episodes=2, length=5)):
        data.accept("a", seq, False, chunk)
    data.close()
    import shutil
    shutil.rmtree(tmp_path / "store")
    again = DurableReplay(tmp_path, SPACE, ACTION, ServerConfig(capacity=100))
    assert again.storage.total == 0 and again.storage.num_transitions() == 0
    again.close()


def test_a_wrong_server_key_or_value_fails_at_start_up_naming_it():
    from robolearn.config import ConfigError, load_typed

    assert load_typed(ServerConfig, {"capacity": 100, "demos": None}, "server").capacity == 100
    with pytest.raises(ConfigError, match="capasity"):
        load_typed(ServerConfig, {"capasity": 100}, "server")
    for key, value in (("capacity", 1), ("demo_ratio", 1.5), ("sampler_threads", -1), ("max_actors", 0), ("drain_s", -1.0)):
        with pytest.raises(ConfigError, match=f"server.{key}"):
            load_typed(ServerConfig, {key: value}, "server")
