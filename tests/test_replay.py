"""Replay storage: episode boundaries, truncation bootstrap, n-step, frame stacks, demo mixing, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from robolearn.replay import MixedSampler, ReplayFormatError, ReplayStorage

SPACE = spaces.Dict({"cam": spaces.Box(0, 255, (2, 2, 3), np.uint8), "pos": spaces.Box(-np.inf, np.inf, (1,), np.float32)})


def obs(v: float) -> dict:
    """An observation that encodes its step value in both keys."""
    return {"cam": np.full((2, 2, 3), int(v) % 256, np.uint8), "pos": np.array([v], np.float32)}


def add_episode(store, start, length, end="terminated", stream=0, reward=lambda t: 1.0):
    store.start_episode(obs(start), stream)
    for t in range(length):
        last = t == length - 1
        store.add([start + t], reward(t), last and end == "terminated", last and end == "truncated", obs(start + t + 1), stream)


def test_one_row_per_step_and_next_obs_by_index():
    store = ReplayStorage(SPACE, (1,), 100)
    add_episode(store, 0, 5)
    assert len(store) == 6 and store.num_transitions() == 5
    batch = store.gather(np.arange(5), n_step=1, gamma=0.9)
    np.testing.assert_array_equal(batch.obs["pos"][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(batch.next_obs["pos"][:, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(batch.action[:, 0], [0, 1, 2, 3, 4])


def test_termination_stops_bootstrap_truncation_keeps_it():
    store = ReplayStorage(SPACE, (1,), 100)
    add_episode(store, 0, 2, end="terminated")
    add_episode(store, 10, 2, end="truncated")
    term = store.gather(np.array([1]), n_step=1, gamma=0.9)
    trunc = store.gather(np.array([4]), n_step=1, gamma=0.9)
    assert term.discount[0] == 0.0
    assert trunc.discount[0] == pytest.approx(0.9)
    assert trunc.next_obs["pos"][0, 0] == 12  # bootstraps from the final observation


def test_n_step_returns_stop_at_episode_ends():
    store = ReplayStorage(SPACE, (1,), 100)
    add_episode(store, 0, 4, end="terminated", reward=lambda t: float(t + 1))  # rewards 1, 2, 3, 4
    batch = store.gather(np.array([0, 2, 3]), n_step=3, gamma=0.5)
    np.testing.assert_allclose(batch.reward, [1 + 0.5 * 2 + 0.25 * 3, 3 + 0.5 * 4, 4])
    np.testing.assert_allclose(batch.discount, [0.125, 0.0, 0.0])
    np.testing.assert_array_equal(batch.next_obs["pos"][:, 0], [3, 4, 4])
    store2 = ReplayStorage(SPACE, (1,), 100)
    add_episode(store2, 0, 4, end="truncated", reward=lambda t: float(t + 1))
    batch = store2.gather(np.array([2]), n_step=3, gamma=0.5)
    assert batch.reward[0] == pytest.approx(3 + 0.5 * 4) and batch.discount[0] == pytest.approx(0.25)


def test_frame_stacks_never_cross_episode_boundaries():
    store = ReplayStorage(SPACE, (1,), 100)
    add_episode(store, 0, 3)  # rows 0..3
    add_episode(store, 100, 3)  # rows 4..7: first obs value 100
    batch = store.gather(np.array([4, 5, 6]), n_step=1, frame_stack=3)
    stacks = batch.obs["cam"][:, :, 0, 0, 0]  # (B, K) oldest first
    np.testing.assert_array_equal(stacks, [[100, 100, 100], [100, 100, 101], [100, 101, 102]])
    np.testing.assert_array_equal(batch.next_obs["cam"][:, :, 0, 0, 0], [[100, 100, 101], [100, 101, 102], [101, 102, 103]])
    assert batch.obs["pos"].shape == (3, 1)  # vectors are not stacked


def test_interleaved_streams_stay_separate():
    store = ReplayStorage(SPACE, (1,), 100)
    store.start_episode(obs(0), stream=0)
    store.start_episode(obs(50), stream=1)
    for t in range(3):
        store.add([t], 0.0, False, False, obs(t + 1), stream=0)
        store.add([50 + t], 0.0, False, False, obs(51 + t), stream=1)
    rng = np.random.default_rng(0)
    batch = store.sample(64, rng, n_step=2, frame_stack=2)
    delta = batch.next_obs["pos"][:, 0] - batch.obs["pos"][:, 0]
    assert set(delta.tolist()) <= {1.0, 2.0}  # never jumps to the other stream
    with pytest.raises(RuntimeError, match="stream 7"):
        store.add([0], 0.0, False, False, obs(0), stream=7)


def test_ring_overwrites_oldest_and_samples_only_complete_transitions():
    store = ReplayStorage(SPACE, (1,), 10)
    for e in range(5):
        add_episode(store, 10 * e, 3)
    assert len(store) == 10 and store.oldest == 10
    rng = np.random.default_rng(0)
    batch = store.sample(200, rng, n_step=1, frame_stack=3)
    assert np.all(batch.next_obs["pos"][:, 0] == batch.obs["pos"][:, 0] + 1)
    assert batch.obs["pos"].min() >= 20  # rows of overwritten episodes are gone


def test_bad_shapes_are_rejected():
    store = ReplayStorage(SPACE, (1,), 10)
    with pytest.raises(ValueError, match="cam"):
        store.start_episode({"cam": np.zeros((3, 3, 3), np.uint8), "pos": np.zeros(1)})
    store.start_episode(obs(0))
    with pytest.raises(ValueError, match="action shape"):
        store.add([0, 1], 0.0, False, False, obs(1))


def test_demo_ratio_in_every_batch():
    online = ReplayStorage(SPACE, (1,), 100)
    demos = ReplayStorage(SPACE, (1,), 100)
    add_episode(online, 0, 10)
    add_episode(demos, 200, 10)  # demo observations are >= 200
    rng = np.random.default_rng(0)
    for ratio, expected in ((0.5, 32), (0.25, 16), (0.0, 0)):
        batch = MixedSampler(online, demos, ratio).sample(64, rng)
        assert int((batch.obs["pos"][:, 0] >= 200).sum()) == expected
    assert MixedSampler(online, None).sample(8, rng).obs["pos"].max() < 200


def test_demo_rows_are_flagged_in_the_batch_and_on_the_wire():
    from robolearn.replay.codec import batch_arrays, batch_from_arrays

    online, demos = ReplayStorage(SPACE, (1,), 100), ReplayStorage(SPACE, (1,), 100)
    add_episode(online, 0, 10)
    add_episode(demos, 200, 10)
    batch = MixedSampler(online, demos, 0.25).sample(64, np.random.default_rng(1))
    np.testing.assert_array_equal(batch.demo, batch.obs["pos"][:, 0] >= 200)
    assert batch.demo.sum() == 16
    wire = batch_from_arrays(batch_arrays(batch))
    np.testing.assert_array_equal(wire.demo, batch.demo)
    assert not MixedSampler(online, None).sample(8, np.random.default_rng(1)).demo.any()
    assert online.gather(np.arange(3), n_step=1, gamma=0.9).demo is None  # a store alone knows nothing of demos
    assert batch_from_arrays(batch_arrays(online.gather(np.arange(3), n_step=1, gamma=0.9))).demo is None


def test_save_load_round_trip(tmp_path):
    store = ReplayStorage(SPACE, (1,), 12)
    for e in range(3):
        add_episode(store, 10 * e, 4)
    store.start_episode(obs(99), stream=3)  # an episode in progress survives too
    path = tmp_path / "replay.npz"
    store.save(path)
    loaded = ReplayStorage.load(path, SPACE, (1,))
    assert (loaded.total, len(loaded), loaded.num_transitions()) == (store.total, len(store), store.num_transitions())
    starts = np.arange(store.oldest, store.total)
    starts = starts[store.next[starts % 12] >= 0]
    a, b = store.gather(starts, n_step=2, frame_stack=2), loaded.gather(starts, n_step=2, frame_stack=2)
    for key in a.obs:
        np.testing.assert_array_equal(a.obs[key], b.obs[key])
        np.testing.assert_array_equal(a.next_obs[key], b.next_obs[key])
    np.testing.assert_array_equal(a.reward, b.reward)
    loaded.add([1], 0.0, False, False, obs(100), stream=3)


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    store = ReplayStorage(SPACE, (1,), 50)
    add_episode(store, 0, 5)
    path = tmp_path / "replay.npz"
    store.save(path)
    add_episode(store, 10, 5)

    def crash(*args, **kwargs):
        with open(path.with_name(path.name + ".tmp"), "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(path)
    monkeypatch.undo()
    assert ReplayStorage.load(path, SPACE, (1,)).num_transitions() == 5


def test_corrupt_or_mismatched_files_fail_clearly(tmp_path):
    path = tmp_path / "replay.npz"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ReplayFormatError, match="corrupt"):
        ReplayStorage.load(path, SPACE, (1,))
    with pytest.raises(ReplayFormatError, match="does not exist"):
        ReplayStorage.load(tmp_path / "missing.npz", SPACE, (1,))
    store = ReplayStorage(SPACE, (1,), 10)
    add_episode(store, 0, 2)
    store.save(path)
    other = spaces.Dict({"cam": spaces.Box(0, 255, (4, 4, 3), np.uint8)})
    with pytest.raises(ReplayFormatError, match="different observation"):
        ReplayStorage.load(path, other, (1,))
    # A truncated file (a crash of something other than our save) is reported, not half-loaded.
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayFormatError):
        ReplayStorage.load(path, SPACE, (1,))


def test_memory_per_transition():
    store = ReplayStorage(SPACE, (1,), 1000)
    for e in range(10):
        add_episode(store, 0, 99)
    row = 12 + 4 + 4 + 4 + 1 + 1 + 8 + 8 + 8  # image, pos, action, reward, flags, links, policy version
    assert store.bytes_per_row() == row
    assert store.bytes_per_transition() == pytest.approx(row * 100 / 99)


def _store_state(store):
    return {name: getattr(store, name).copy() for name in ("action", "reward", "terminated", "truncated", "policy_version", "prev", "next")} | {
        f"obs/{k}": v.copy() for k, v in store.obs.items()} | {"total": store.total, "cursor": dict(store._cursor),
                                                              "counts": (store.transitions_added, store.episodes_added)}


@pytest.mark.parametrize("capacity", [7, 40, 1000])
def test_extend_equals_record_by_record(capacity):
    """The server's bulk write gives exactly the rows, links and counters of start_episode/add calls,
    across chunk boundaries, several episodes per chunk, interleaved streams and wrap-around."""
    rng = np.random.default_rng(capacity)
    bulk, loop = ReplayStorage(SPACE, (1,), capacity), ReplayStorage(SPACE, (1,), capacity)
    value = 0
    for _ in range(60):
        stream = int(rng.integers(0, 3))
        n = int(rng.integers(1, 9))
        starts = rng.random(n) < 0.2
        if not loop.has_open_episode(stream):  # never opened, ended, or its start was overwritten
            starts[0] = True
        ends = rng.random(n) < 0.15
        term, trunc = ends & (rng.random(n) < 0.5), ends & ~(rng.random(n) < 0.5)
        term[starts], trunc[starts] = False, False
        # After an end the next record must start an episode.
        for i in range(1, n):
            if term[i - 1] or trunc[i - 1]:
                starts[i], term[i], trunc[i] = True, False, False
        values = value + np.arange(n)
        value += n
        records = {"cam": np.stack([obs(v)["cam"] for v in values]), "pos": np.stack([obs(v)["pos"] for v in values])}
        action = values[:, None].astype(np.float32)
        reward, version = values.astype(np.float32), values.astype(np.int64)
        bulk.extend(stream, starts, records, action, reward, term, trunc, version)
        for i in range(n):
            o = {"cam": records["cam"][i], "pos": records["pos"][i]}
            if starts[i]:
                loop.start_episode(o, stream)
            else:
                loop.add(action[i], float(reward[i]), bool(term[i]), bool(trunc[i]), o, stream, int(version[i]))
        assert bulk.num_transitions() == bulk._count_transitions() == loop.num_transitions() == loop._count_transitions()
        a, b = _store_state(bulk), _store_state(loop)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            else:
                assert a[key] == b[key], key


def test_a_bad_run_is_refused_before_anything_is_written():
    """The one write path checks a whole run first: a transition after its episode ended, a missing key or a
    wrong shape raises and leaves the store as it was."""
    store = ReplayStorage(SPACE, (1,), 20)
    add_episode(store, 0, 3)
    before = _store_state(store)
    records = {"cam": np.stack([obs(v)["cam"] for v in (10, 11, 12)]), "pos": np.stack([obs(v)["pos"] for v in (10, 11, 12)])}
    run = dict(action=np.zeros((3, 1), np.float32), reward=np.zeros(3, np.float32), policy_version=np.zeros(3, np.int64))
    with pytest.raises(RuntimeError, match="after its episode ended"):
        store.extend(0, np.array([True, False, False]), records, terminated=np.array([False, True, False]),
                     truncated=np.zeros(3, bool), **run)
    with pytest.raises(ValueError, match="lacks keys"):
        store.extend(0, np.array([True, False, False]), {"cam": records["cam"]}, terminated=np.zeros(3, bool),
                     truncated=np.zeros(3, bool), **run)
    with pytest.raises(ValueError, match="'pos' has shape"):
        store.extend(0, np.array([True, False, False]), {**records, "pos": np.zeros((3, 2), np.float32)},
                     terminated=np.zeros(3, bool), truncated=np.zeros(3, bool), **run)
    with pytest.raises(RuntimeError, match="before start_episode"):
        store.add([0.0], 0.0, False, False, obs(5), stream=7)
    after = _store_state(store)
    for key in before:
        if isinstance(before[key], np.ndarray):
            np.testing.assert_array_equal(before[key], after[key], err_msg=key)
        else:
            assert before[key] == after[key], key


def test_a_margin_against_overwrites_never_collapses_sampling_to_one_row():
    full = ReplayStorage(SPACE, (1,), 20)
    add_episode(full, 0, 19)  # 20 rows: the store is full
    rng = np.random.default_rng(0)
    assert len(np.unique(full.sample_starts(64, rng, skip_oldest=2))) > 10
    with pytest.raises(ValueError, match="skip_oldest"):
        full.sample_starts(8, rng, skip_oldest=15)
    # per store: the demo store's margin is its own (none here), not the online store's
    online = ReplayStorage(SPACE, (1,), 100)
    add_episode(online, 0, 30)
    draws = MixedSampler(online, full, 0.5).draw(64, rng, skip_oldest=10, skip_oldest_demos=0)
    assert len(np.unique(draws[0][1])) > 10
