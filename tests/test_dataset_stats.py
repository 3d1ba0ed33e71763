"""The statistics an export writes, as LeRobot's writer does: per episode in the episodes table
(`stats/<feature>/<stat>`: min, max, mean, std, count, q01..q99; cameras per channel in [0, 1] over sampled
frames) and aggregated in meta/stats.json. Checked against numpy on the episode's own rows and frames, and
the aggregate against numpy on all of them."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robolearn.dataset import import_dataset
from robolearn.dataset import lerobot_format as fmt
from tests.test_dataset import SIM, assert_same_rows, load, sim_dataset, sim_demos  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STATS = ("min", "max", "mean", "std", "count", *QUANTILES)


def numpy_stats(x: np.ndarray, axis=0) -> dict[str, np.ndarray]:
    """What the stats of `x` over `axis` should be, computed here without robolearn's code."""
    stats = {"min": x.min(axis), "max": x.max(axis), "mean": x.mean(axis), "std": x.std(axis)}
    stats.update({name: np.quantile(x, q, axis=axis) for name, q in QUANTILES.items()})
    return stats


def rows_of(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float64)
    return col.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)


@pytest.fixture(scope="module")
def exported(sim_demos, sim_dataset):
    info = json.loads((sim_dataset / "meta/info.json").read_text())
    episodes = pq.read_table(sim_dataset / "meta/episodes/chunk-000/file-000.parquet")
    data = pq.read_table(sim_dataset / "data/chunk-000/file-000.parquet")
    stats = json.loads((sim_dataset / "meta/stats.json").read_text())
    return info, episodes, data, stats, load(sim_demos, SIM)


def test_every_feature_has_per_episode_stats_columns_named_and_typed_as_lerobots(exported):
    info, episodes, _, stats, _ = exported
    assert set(stats) == set(info["features"])  # every feature, index columns and cameras included
    for name, ft in info["features"].items():
        for stat in STATS:
            column = f"stats/{name}/{stat}"
            assert column in episodes.column_names, column
            kind = episodes.schema.field(column).type
            leaf = pa.int64() if stat == "count" else pa.float64()
            depth = 3 if ft["dtype"] == "video" and stat != "count" else 1  # cameras (3, 1, 1), vectors (k,), scalars and counts (1,)
            for _ in range(depth):
                leaf = pa.list_(leaf)
            assert kind == leaf, (column, kind)
            assert set(stats[name]) == set(STATS)
    # The bookkeeping columns stay where they were: LeRobot's reader drops only the stats/ ones.
    assert episodes.column_names[-2:] == ["meta/episodes/chunk_index", "meta/episodes/file_index"]


def test_per_episode_stats_equal_numpy_on_the_episodes_rows(exported):
    info, episodes, data, _, _ = exported
    table = episodes.to_pylist()
    assert len(table) == 2
    for name, ft in info["features"].items():
        if ft["dtype"] == "video":
            continue
        values = rows_of(data, name)
        for ep in table:
            rows = values[ep["dataset_from_index"]:ep["dataset_to_index"]]
            assert ep[f"stats/{name}/count"] == [ep["length"]]
            for stat, expected in numpy_stats(rows).items():
                got = np.array(ep[f"stats/{name}/{stat}"])
                assert got.shape == (rows.shape[1],), (name, stat)
                np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=f"{name} {stat} episode {ep['episode_index']}")


def test_camera_stats_are_per_channel_in_0_1_over_the_episodes_frames(exported):
    info, episodes, _, _, store = exported
    for ep in episodes.to_pylist():
        rows = np.arange(ep["dataset_from_index"], ep["dataset_to_index"])  # the store's rows, one episode after another
        for cam in ("front", "wrist"):
            frames = store.obs[cam][rows]  # the recorded images (LeRobot samples the frames it recorded, not the decoded video)
            assert len(frames) == 16 and len(fmt.sampled_frames(16)) == 16  # a short episode: every frame
            pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
            key = f"stats/observation.images.{cam}"
            assert ep[f"{key}/count"] == [16]
            for stat, expected in numpy_stats(pixels).items():
                got = np.array(ep[f"{key}/{stat}"])
                assert got.shape == (3, 1, 1)
                np.testing.assert_allclose(got[:, 0, 0], expected, rtol=1e-12, atol=1e-12, err_msg=f"{cam} {stat}")
            assert 0.0 <= got.min() and got.max() <= 1.0


def test_stats_json_aggregates_the_episodes_as_stats_over_all_rows(exported):
    info, episodes, data, stats, store = exported
    table = episodes.to_pylist()
    for name, ft in info["features"].items():
        if ft["dtype"] == "video":
            pixels = store.obs[name.removeprefix("observation.images.")][:32].reshape(-1, 3).astype(np.float64) / 255.0
            expected, count, unshape = numpy_stats(pixels), 32, lambda v: np.array(v)[:, 0, 0]
        else:
            values = rows_of(data, name)
            expected, count, unshape = numpy_stats(values), len(values), np.array
        assert stats[name]["count"] == [count]
        for stat in ("min", "max", "mean", "std"):
            np.testing.assert_allclose(unshape(stats[name][stat]), expected[stat], rtol=1e-9, atol=1e-12, err_msg=f"{name} {stat}")
        # Quantiles aggregate as LeRobot's do: the count-weighted mean of the episodes'; ordered, within min..max.
        counts = np.array([ep[f"stats/{name}/count"][0] for ep in table], np.float64)
        ordered = [unshape(stats[name][s]) for s in ("min", *QUANTILES, "max")]
        for stat in QUANTILES:
            weighted = sum(c * np.array(ep[f"stats/{name}/{stat}"], np.float64) for c, ep in zip(counts, table)) / counts.sum()
            np.testing.assert_allclose(unshape(weighted), unshape(stats[name][stat]), rtol=1e-12, atol=1e-12)
        for low, high in zip(ordered, ordered[1:]):
            assert np.all(low <= high + 1e-12), name


def test_aggregating_episodes_equals_stats_over_their_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.normal(loc, scale, (n, 4)) for loc, scale, n in ((0.0, 1.0, 37), (3.0, 0.1, 5), (-2.0, 4.0, 200))]
    merged = fmt.aggregate_stats([fmt.frame_stats(p) for p in parts])
    whole = np.concatenate(parts)
    assert merged["count"].tolist() == [242]
    for stat in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(merged[stat], numpy_stats(whole)[stat], rtol=1e-12, atol=1e-12, err_msg=stat)
    quantiles = np.stack([merged[q] for q in QUANTILES])
    assert np.all(np.diff(quantiles, axis=0) >= 0) and np.all(merged["min"] <= quantiles[0]) and np.all(quantiles[-1] <= merged["max"])
    # A single episode aggregates to itself.
    alone = fmt.frame_stats(parts[0])
    for stat, value in fmt.aggregate_stats([alone]).items():
        np.testing.assert_allclose(value, alone[stat], rtol=1e-12, err_msg=stat)


def test_frames_are_sampled_and_large_frames_strided_as_lerobot_does():
    assert fmt.sampled_frames(1).tolist() == [0] and fmt.sampled_frames(60).tolist() == list(range(60))
    for length, wanted in ((100, 100), (500, 105), (1000, 177), (20_000, 1681), (10**6, 10_000)):
        picked = fmt.sampled_frames(length)
        assert len(picked) == wanted and picked[0] == 0 and picked[-1] == length - 1 and np.all(np.diff(picked) > 0), length
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 480, 640, 3), dtype=np.uint8)  # >= 300 px: every 4th pixel of every 4th row
    stats = fmt.image_stats(frames)
    expected = numpy_stats(frames[:, ::4, ::4].reshape(-1, 3).astype(np.float64) / 255.0)
    assert stats["count"].tolist() == [3]
    for stat, value in expected.items():
        np.testing.assert_allclose(stats[stat][:, 0, 0], value, rtol=1e-12, atol=1e-12, err_msg=stat)
    small = fmt.image_stats(frames[:, :84, :84])  # below 300 px: every pixel
    np.testing.assert_allclose(small["q50"][:, 0, 0], np.quantile(frames[:, :84, :84].reshape(-1, 3) / 255.0, 0.5, axis=0))


def test_an_export_with_stats_still_imports_exactly(sim_demos, sim_dataset, tmp_path):
    import_dataset(sim_dataset, tmp_path / "back.npz", SIM)
    assert_same_rows(load(sim_demos, SIM), load(tmp_path / "back.npz", SIM))
