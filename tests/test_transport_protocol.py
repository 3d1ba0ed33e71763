"""Wire schema: round trips, compression, and clear errors for everything malformed."""

import msgpack
import numpy as np
import pytest

from robolearn.replay import ReplayStorage
from robolearn.transport.chunks import ChunkBuilder, check_chunk, check_continuity
from robolearn.spec import EnvSpec
from robolearn.transport.protocol import SCHEMA_VERSION, ProtocolError, decode, encode, wire_bytes
from tests.transport_cases import ACTION, SPACE, action, observation


def test_arrays_round_trip_without_copies():
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones((2, 5, 5, 3), np.uint8), "c": np.array([True, False])}
    frames = [bytes(f) for f in encode("chunk", {"seq": 3}, arrays)]
    msg = decode(frames)
    assert msg.type == "chunk" and msg.header["seq"] == 3
    for name, value in arrays.items():
        np.testing.assert_array_equal(msg.arrays[name], value)
        assert msg.arrays[name].dtype == value.dtype
    assert np.shares_memory(msg.arrays["b"], np.frombuffer(frames[2], np.uint8))  # a view of the received buffer


def test_rows_travel_as_separate_buffers_and_decode_to_views():
    rows = [np.full((3, 4), i, np.float32) for i in range(5)]
    frames = [bytes(f) for f in encode("chunk", {}, {"obs/x": rows, "kind": np.zeros(5, np.uint8)})]
    assert len(frames) == 1 + 5 + 1
    msg = decode(frames)
    assert isinstance(msg.arrays["obs/x"], list) and len(msg.arrays["obs/x"]) == 5
    for i, row in enumerate(msg.arrays["obs/x"]):
        np.testing.assert_array_equal(row, rows[i])
    with pytest.raises(ProtocolError, match="more buffers than the message carries"):
        decode(frames[:4])
    with pytest.raises(ProtocolError, match="describes 6 buffers, message carries 7"):
        decode(frames + [b"extra"])
    with pytest.raises(ProtocolError, match="equal shape"):
        encode("chunk", {}, {"x": [np.zeros(2), np.zeros(3)]})


def test_png_is_lossless_and_jpeg_is_close_and_smaller():
    y, x = np.mgrid[0:84, 0:84]
    smooth = np.stack([np.stack([(x * 3 + k) % 256, (y * 2) % 256, (x + y + 40 * k) % 256], -1) for k in range(4)]).astype(np.uint8)
    png = decode(encode("x", {}, {"img": smooth}, compress={"img": "png"}))
    np.testing.assert_array_equal(png.arrays["img"], smooth)
    frames = encode("x", {}, {"img": smooth}, compress={"img": "jpeg"}, jpeg_quality=90)
    jpeg = decode(frames).arrays["img"]
    assert np.abs(jpeg.astype(int) - smooth).mean() < 4
    assert wire_bytes(frames) < smooth.nbytes / 2


def test_schema_version_mismatch_is_named():
    head = msgpack.packb({"v": SCHEMA_VERSION + 1, "type": "hello", "arrays": []})
    with pytest.raises(ProtocolError, match=f"schema version {SCHEMA_VERSION + 1}.*speaks version {SCHEMA_VERSION}"):
        decode([head])


@pytest.mark.parametrize("frames, match", [
    ([], "empty message"),
    ([b"\xc1garbage"], "not msgpack"),
    ([msgpack.packb([1, 2])], "must be a map"),
    ([msgpack.packb({"v": SCHEMA_VERSION})], "no string 'type'"),
    ([msgpack.packb({"v": SCHEMA_VERSION, "type": "x", "arrays": [["a", "float32", [4], "raw", 16]]})], "more buffers than the message carries \\(0\\)"),
    ([msgpack.packb({"v": SCHEMA_VERSION, "type": "x", "arrays": [["a", "object", [1], "raw", 8]]}), b"12345678"], "bad name, dtype"),
    ([msgpack.packb({"v": SCHEMA_VERSION, "type": "x", "arrays": [["a", "float32", [-1], "raw", 4]]}), b"1234"], "bad shape"),
    ([msgpack.packb({"v": SCHEMA_VERSION, "type": "x", "arrays": [["a", "float32", [2, 2], "png", [3]]]}), b"123"], "carries uint8 images"),
])
def test_malformed_messages_raise_protocol_errors(frames, match):
    with pytest.raises(ProtocolError, match=match):
        decode(frames)


def test_truncated_buffer_is_detected():
    frames = [bytes(f) for f in encode("chunk", {}, {"a": np.zeros((4, 4), np.float32)})]
    with pytest.raises(ProtocolError, match="truncated"):
        decode([frames[0], frames[1][:-1]])


def test_only_plain_dtypes_go_on_the_wire():
    with pytest.raises(ProtocolError, match="dtype object"):
        encode("x", {}, {"a": np.array([{"pickle": "me"}], dtype=object)})


def _chunk(first: int = 0, steps: int = 3) -> dict:
    builder = ChunkBuilder(SPACE, ACTION)
    builder.start(observation(first))
    for i in range(first + 1, first + 1 + steps):
        builder.step(action(i), float(i), False, i == first + steps, observation(i), policy_version=7)
    return builder.take()


def test_chunk_stores_each_observation_once_with_policy_versions():
    arrays = _chunk(steps=3)
    assert check_chunk(arrays, SPACE, ACTION) == 4  # one start + three steps: four observations
    store = ReplayStorage(SPACE, ACTION, 100)
    assert store.extend_records(0, arrays) == 3
    assert len(store) == 4 and store.num_transitions() == 3
    batch = store.gather(np.array([0, 1, 2]))
    np.testing.assert_array_equal(batch.reward, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(batch.next_obs["joint_pos"][:, 0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(store.policy_version[:3], [7, 7, 7])


def test_wire_bytes_per_transition_close_to_one_observation():
    spec = EnvSpec.from_config({})  # the default pixel contract: two 84x84 cameras
    space = spec.observation_space()
    builder = ChunkBuilder(space, (spec.action_dim,))
    obs = {k: np.zeros(s.shape, s.dtype) for k, s in space.spaces.items()}
    builder.start(obs)
    for t in range(16):
        builder.step(np.zeros(spec.action_dim), 0.0, False, False, obs, 0)
    frames = encode("chunk", {"name": "actor-0", "seq": 123, "demo": False}, builder.take())
    obs_bytes = sum(v.nbytes for v in obs.values())
    assert wire_bytes(frames) / 16 <= 1.1 * obs_bytes  # 17 observations for 16 transitions, plus small headers


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.__setitem__("reward", np.array([0, np.nan, 0, 0], np.float32)), "'reward' holds non-finite"),
    (lambda a: a.__setitem__("obs/cam", [r[:6] for r in a["obs/cam"]]), "'obs/cam' is uint8"),
    (lambda a: a.__setitem__("obs/cam", a["obs/cam"][:3]), "'obs/cam' is uint8 \\(3, 12, 12, 3\\)"),
    (lambda a: a.pop("action"), "missing \\['action'\\]"),
    (lambda a: a.__setitem__("extra", np.zeros(4)), "unexpected \\['extra'\\]"),
    (lambda a: a.__setitem__("kind", np.array([0, 1, 9, 1], np.uint8)), "unknown record kinds \\[9\\]"),
])
def test_out_of_spec_chunks_are_rejected_by_name(mutate, match):
    arrays = _chunk(steps=3)
    mutate(arrays)
    with pytest.raises(ProtocolError, match=match):
        check_chunk(arrays, SPACE, ACTION)


def test_a_transition_without_an_open_episode_is_rejected():
    arrays = {k: v[1:] for k, v in _chunk(steps=3).items()}  # drop the episode start
    with pytest.raises(ProtocolError, match="record 0 is a transition but its stream has no open episode"):
        check_continuity(arrays, episode_open=False)
    check_continuity(arrays, episode_open=True)  # a continuation of an open episode is fine


def test_a_chunk_builder_grows_past_its_rows_and_never_reuses_a_taken_chunk():
    builder = ChunkBuilder(SPACE, ACTION, rows=2)
    builder.start(observation(0))
    for i in range(1, 6):  # six records in arrays made for two
        builder.step(action(i), float(i), False, False, observation(i), 0)
    first = builder.take()
    builder.start(observation(100))  # records after a take go into new arrays
    builder.step(action(101), 101.0, False, False, observation(101), 0)
    second = builder.take()
    np.testing.assert_array_equal(first["obs/joint_pos"][:, 0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(first["reward"], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(second["obs/joint_pos"][:, 0], [100, 101])
    assert check_chunk(first, SPACE, ACTION) == 6 and check_chunk(second, SPACE, ACTION) == 2


@pytest.mark.parametrize("bad, match", [
    ({"cam": np.zeros((12, 12, 3), np.float32)}, "'cam' is float32 \\(12, 12, 3\\), the spec says uint8"),
    ({"cam": np.zeros((12, 12), np.uint8)}, "'cam' is uint8 \\(12, 12\\)"),
    ({"joint_pos": 0.5}, "'joint_pos' is float \\(\\)"),
])
def test_a_chunk_builder_refuses_out_of_spec_observations_where_they_come_from(bad, match):
    builder = ChunkBuilder(SPACE, ACTION)
    with pytest.raises(ValueError, match=match):
        builder.start({**observation(0), **bad})
    with pytest.raises(ValueError, match="action has shape \\(3,\\)"):
        builder.step(np.zeros(3, np.float32), 0.0, False, False, observation(1), 0)
