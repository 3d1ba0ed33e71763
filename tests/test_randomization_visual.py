"""Visual and image randomisation: each key changes what it names and nothing else; seeded resets repeat exactly."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robolearn.config import ImageRandomization
from sim import make_kettle_sink_env
from sim import kettle as kettle_entity
from sim.kitchen import HIDDEN_Z, KETTLE_NOMINAL_XY, SINK_CENTRE_XY, SINK_HALF
from sim.randomization.image import ImageRandomizer
from sim.randomization.textures import POOLS
from sim.randomization.visual import VisualRandomizer

FIELDS = VisualRandomizer.MODEL_FIELDS
# Distractors on in every episode below, so switching them off has something to change.
BASE = {"distractors": {"count": [2, 4]}}


@pytest.fixture
def make():
    envs = []

    def _make(**randomization):
        env = make_kettle_sink_env(randomization={**BASE, **randomization})
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def scene_arrays(env) -> dict[str, np.ndarray]:
    m = env.unwrapped.model
    return {name: getattr(m, name).copy() for name in FIELDS}


def changed(a: dict, b: dict) -> set[str]:
    return {name for name in a if not np.array_equal(a[name], b[name])}


def visual(env) -> VisualRandomizer:
    return env.unwrapped._randomizer.visual


OTHER_PARTS = ("seed", "latency_ms")


@pytest.mark.parametrize(
    "off, names",
    [
        ({"materials": {"enabled": False}}, {"geom_rgba", "geom_matid", "tex_data"}),
        ({"lighting": {"enabled": False}}, {"light_active", "light_diffuse", "light_dir"}),
        ({"camera": {"pos": 0.0, "angle": 0.0, "fovy": 0.0}}, {"cam_pos", "cam_quat", "cam_fovy"}),
        ({"distractors": {"count": [0, 0]}}, {"body_pos", "body_quat", "geom_rgba"}),
    ],
)
def test_each_part_changes_what_it_names_and_nothing_else(make, off, names):
    full, without = make(), make(**off)
    obs_full, _ = full.reset(seed=5)
    obs_without, _ = without.reset(seed=5)
    a, b = scene_arrays(full), scene_arrays(without)
    assert changed(a, b) == names
    if "geom_rgba" in names:  # only the geoms that part colours
        m, v = full.unwrapped.model, visual(full)
        rows = set(np.flatnonzero((a["geom_rgba"] != b["geom_rgba"]).any(axis=1)))
        if "tex_data" in names:
            mine = set(np.concatenate([g for g, _, _ in v.surfaces.values()] + [full.unwrapped.scene.kettle_geoms]))
        else:
            mine = set(np.concatenate(v.distractor_geoms))
        assert rows and rows <= mine, m.ngeom
    # The other parts drew the same: kettle start, latency, the env seed.
    np.testing.assert_array_equal(full.unwrapped.privileged_state(), without.unwrapped.privileged_state())
    for key in OTHER_PARTS:
        assert full.unwrapped.randomization()[key] == without.unwrapped.randomization()[key]
    assert not np.array_equal(obs_full["front"], obs_without["front"])


def test_randomisation_off_and_apply_none_give_the_nominal_scene(make):
    nominal = make_kettle_sink_env(randomization={"enabled": False})
    try:
        nominal.reset(seed=1)
        reference = scene_arrays(nominal)
        env = make()
        env.reset(seed=3)
        assert changed(scene_arrays(env), reference)
        visual(env).apply(None)
        assert changed(scene_arrays(env), reference) == set()
        assert visual(env).shadows is False
    finally:
        nominal.close()


def test_seeded_resets_repeat_frames_exactly_through_live_renderers(make):
    """A renderer made in an earlier episode must show this episode's textures (the re-upload hook)."""
    fresh, used = make(), make()
    used.reset(seed=1)
    used.step(used.action_space.sample())
    used.reset(seed=2)
    a, _ = used.reset(seed=7)
    b, _ = fresh.reset(seed=7)
    assert visual(used).drawn == visual(fresh).drawn and visual(used).drawn["texture_counter"] != "plain"
    for name in ("front", "wrist"):
        np.testing.assert_array_equal(a[name], b[name])
    c, _ = fresh.reset(seed=8)
    assert not np.array_equal(a["front"], c["front"])


def test_camera_pos_zero_keeps_the_configured_position(make):
    env = make(camera={"pos": 0.0})
    nominal = visual(env)._nominal
    env.reset(seed=4)
    m = env.unwrapped.model
    np.testing.assert_array_equal(m.cam_pos, nominal["cam_pos"])
    assert not np.array_equal(m.cam_quat, nominal["cam_quat"])


def test_camera_offsets_are_around_the_configured_pose():
    env = make_kettle_sink_env(cameras=[{"name": "front", "pos": [1.0, 0.2, 0.6], "look_at": [0.4, 0.0, 0.0], "fovy": 45.0}, {"name": "wrist"}])
    try:
        m, front = env.unwrapped.model, env.unwrapped.scene.camera_ids["front"]
        env.reset(seed=2)
        assert np.linalg.norm(m.cam_pos[front] - [1.0, 0.2, 0.6]) <= 0.05 + 1e-9
        assert abs(m.cam_fovy[front] - 45.0) <= 3.0 + 1e-9
    finally:
        env.close()


def test_exact_camera_offsets_have_exactly_the_configured_size(make):
    env = make(camera={"pos": 0.03, "angle": 0.05, "fovy": 3.0, "exact": True})
    nominal = visual(env)._nominal
    for seed in range(3):
        env.reset(seed=seed)
        m = env.unwrapped.model
        for idx in env.unwrapped.scene.camera_ids.values():
            assert np.linalg.norm(m.cam_pos[idx] - nominal["cam_pos"][idx]) == pytest.approx(0.03, abs=1e-9)
            cos_half = abs(np.dot(m.cam_quat[idx], nominal["cam_quat"][idx]))
            assert 2 * np.arccos(min(cos_half, 1.0)) == pytest.approx(0.05, abs=1e-6)
            assert abs(m.cam_fovy[idx] - nominal["cam_fovy"][idx]) == pytest.approx(3.0, abs=1e-9)


def test_camera_only_moves_the_listed_cameras_as_they_move_among_all(make):
    moved = {"pos": 0.05, "angle": 0.1, "fovy": 3.0, "exact": True}
    every, front_only = make(camera=moved), make(camera={**moved, "only": ["front"]})
    nominal = visual(front_only)._nominal
    ids = front_only.unwrapped.scene.camera_ids
    for seed in range(3):
        every.reset(seed=seed)
        front_only.reset(seed=seed)
        a, b = every.unwrapped.model, front_only.unwrapped.model
        for name in ("cam_pos", "cam_quat", "cam_fovy"):
            # the front camera: the same move as when every camera moves; the wrist: where it was configured
            np.testing.assert_array_equal(getattr(b, name)[ids["front"]], getattr(a, name)[ids["front"]])
            np.testing.assert_array_equal(getattr(b, name)[ids["wrist"]], nominal[name][ids["wrist"]])
            assert not np.array_equal(getattr(a, name)[ids["wrist"]], nominal[name][ids["wrist"]])


def test_camera_only_refuses_a_camera_the_scene_lacks(make):
    with pytest.raises(ValueError, match=r"camera\.only: no camera \['side'\].*front"):
        make(camera={"only": ["side"]}).reset(seed=0)
    with pytest.raises(ValueError, match=r"env\.randomization\.camera\.only.*(list|List)"):
        make(camera={"only": "front"})


def test_two_lights_without_tint_or_shadows_light_the_old_scene(make):
    env = make(lighting={"count": [2, 2], "intensity": [0.7, 1.3], "tint": 0.0, "direction": 0.0, "shadow_probability": 0.0})
    nominal = visual(env)._nominal
    for seed in range(5):
        env.reset(seed=seed)
        m = env.unwrapped.model
        assert list(m.light_active) == [1, 1, 0]  # top and side, as before randomisation
        np.testing.assert_allclose(m.light_dir, nominal["light_dir"], atol=1e-12)
        scale = m.light_diffuse / nominal["light_diffuse"]
        assert np.all((scale >= 0.7) & (scale <= 1.3)) and np.allclose(scale, scale[:, :1])  # white, only brighter/dimmer
        assert not env.unwrapped.randomization()["shadows"]


def test_shadows_follow_their_probability_and_reach_the_renderer(make):
    v = visual(make())
    counts = {}
    for p in (0.0, 0.5, 1.0):
        v.cfg.lighting.shadow_probability = p
        counts[p] = sum(v.apply(np.random.default_rng(s)) or v.shadows for s in range(40))
    assert counts[0.0] == 0 and 5 < counts[0.5] < 35 and counts[1.0] == 40
    env = make(lighting={"shadow_probability": 1.0})
    env.reset(seed=0)
    renderer = env.unwrapped._renderers[(84, 84)]
    assert renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW]
    assert env.unwrapped.model.light_castshadow.any()


def test_heldout_textures_are_families_training_never_draws(make):
    train, heldout = POOLS["train"], POOLS["heldout"]
    assert not set(train) & set(heldout)
    a, b = np.array([0.8, 0.7, 0.5]), np.array([0.3, 0.2, 0.1])
    made = {name: [f(np.random.default_rng(s), 64, a, b).astype(float) for s in range(10)] for name, f in {**train, **heldout}.items()}
    for h in heldout:
        for t in train:
            # Every heldout image is far from every train image made with the same colours.
            gap = min(np.abs(x - y).mean() for x in made[h] for y in made[t])
            assert gap > 10, (h, t, gap)
    v = visual(make(materials={"pool": "heldout", "texture_probability": 1.0}))
    for s in range(10):
        v.apply(np.random.default_rng(s))
        assert {v.drawn[f"texture_{name}"] for name in v.surfaces} <= set(heldout)


def test_distractors_stay_off_the_kettle_start_area_the_path_and_the_sink(make):
    env = make(distractors={"count": [6, 6]})
    v, m, cfg = visual(env), env.unwrapped.model, env.unwrapped.cfg.randomization
    assert np.all(m.geom_contype[np.concatenate(v.distractor_geoms)] == 0)
    assert np.all(m.geom_conaffinity[np.concatenate(v.distractor_geoms)] == 0)
    from sim.kitchen import DISTRACTORS

    start_x = np.add(KETTLE_NOMINAL_XY[0], cfg.kettle_x_range)
    start_y = np.add(KETTLE_NOMINAL_XY[1], cfg.kettle_y_range)
    placed_total = 0
    for s in range(30):
        v.apply(np.random.default_rng(s))
        spots = []
        for body, d in zip(v.distractor_bodies, DISTRACTORS):
            x, y, z = m.body_pos[body]
            if z == HIDDEN_Z:
                continue
            spots.append((x, y, d.radius))
            # Footprint disc vs the start area grown by the kettle's radius (rectangle distance).
            dx = max(start_x[0] - x, 0, x - start_x[1])
            dy = max(start_y[0] - y, 0, y - start_y[1])
            assert np.hypot(dx, dy) > d.radius + kettle_entity.RADIUS
            sx = max(SINK_CENTRE_XY[0] - SINK_HALF[0] - x, 0, x - SINK_CENTRE_XY[0] - SINK_HALF[0])
            sy = max(SINK_CENTRE_XY[1] - SINK_HALF[1] - y, 0, y - SINK_CENTRE_XY[1] - SINK_HALF[1])
            assert np.hypot(sx, sy) > d.radius
            # Clear of the straight path from the nominal start to the sink by 0.15 m.
            assert abs(x - KETTLE_NOMINAL_XY[0]) > 0.15 + d.radius or not (KETTLE_NOMINAL_XY[1] <= y <= SINK_CENTRE_XY[1])
        for i, (x, y, r) in enumerate(spots):
            for x2, y2, r2 in spots[i + 1 :]:
                assert np.hypot(x - x2, y - y2) > r + r2
        placed_total += len(spots)
        assert v.drawn["distractors"] == len(spots)
    assert placed_total > 30 * 3  # most of the six find room in most episodes


def test_image_none_passes_frames_through_untouched():
    images = ImageRandomizer(ImageRandomization(), ["front"])
    images.reset(None)
    frame = np.full((84, 84, 3), 100, np.uint8)
    assert images("front", frame) is frame


def test_image_brightness_contrast_noise_and_blur_each_change_pixels():
    frame = np.random.default_rng(0).integers(40, 200, (84, 84, 3), dtype=np.uint8)
    frame[:, :42] = 60  # an edge for the blur to soften

    def run(**keys):
        cfg = ImageRandomization(**{"brightness": 0.0, "contrast": 0.0, "noise_std": 0.0, "blur_probability": 0.0, **keys})
        images = ImageRandomizer(cfg, ["front"])
        images.reset(np.random.default_rng(3))
        return [images("front", frame).astype(int) for _ in range(2)]

    same = run()
    np.testing.assert_array_equal(same[0], frame)  # every key at zero: the frame itself
    bright = run(brightness=0.2)
    shift = bright[0] - frame
    assert bright[0].dtype == int and np.ptp(shift[(bright[0] > 0) & (bright[0] < 255)]) <= 1 and abs(shift.mean()) > 1
    np.testing.assert_array_equal(bright[0], bright[1])  # per episode, not per frame
    gain = run(contrast=0.5)[0]
    g = gain.std() / frame.std()  # one gain about mid-grey, the same for every pixel
    assert abs(g - 1) > 0.05 and np.abs(gain - (127.5 + g * (frame - 127.5))).max() <= 1.5
    noisy = run(noise_std=5.0)
    assert 3 < (noisy[0] - frame).std() < 7 and not np.array_equal(noisy[0], noisy[1])  # fresh noise every frame
    blurred = run(blur_probability=1.0)[0]
    assert np.abs(np.diff(blurred, axis=0)).mean() < np.abs(np.diff(frame.astype(int), axis=0)).mean()


def test_image_draws_repeat_for_the_same_seed():
    frame = np.full((84, 84, 3), 128, np.uint8)
    out = []
    for _ in range(2):
        images = ImageRandomizer(ImageRandomization(blur_probability=0.5), ["front", "wrist"])
        images.reset(np.random.default_rng(11))
        out.append([images(c, frame) for c in ("front", "wrist", "front")])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_the_transfer_rows_four_distractors_are_all_on_the_counter_every_episode(make):
    env = make(distractors={"count": [4, 4]})
    placed = []
    for seed in range(30):
        env.reset(seed=seed)
        placed.append(env.randomization()["distractors"])
    assert placed == [4] * 30


def test_a_redrawn_look_changes_the_frames_and_never_the_physics(make):
    # Pretraining redraws the look every frame (pretrain.look_per_frame): same seed, same actions, one env
    # redrawing before every step: identical states and rewards, other images, the episode's other draws kept.
    plain, redrawn = make(), make()
    rng = np.random.default_rng(7)
    plain.reset(seed=3)
    redrawn.reset(seed=3)
    drawn_before = redrawn.unwrapped.randomization()
    action = np.linspace(-0.5, 0.5, plain.action_space.shape[0]).astype(np.float32)
    differed = 0
    for _ in range(4):
        redrawn.unwrapped.redraw_look(rng)
        a, ra, *_ = plain.step(action)
        b, rb, *_ = redrawn.step(action)
        assert ra == rb
        for key in ("joint_pos", "joint_vel", "gripper"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        np.testing.assert_array_equal(plain.unwrapped.data.qpos, redrawn.unwrapped.data.qpos)
        differed += not np.array_equal(a["front"], b["front"])
    assert differed == 4
    drawn_after = redrawn.unwrapped.randomization()
    assert drawn_after["seed"] == drawn_before["seed"] and "look_seed" in drawn_after
    kept = set(drawn_before) - set(visual(redrawn).drawn)  # the dynamics' and the sensing's draws
    assert {"latency_ms", "kettle_mass"} <= kept
    assert {key: drawn_after[key] for key in kept} == {key: drawn_before[key] for key in kept}


def test_a_redrawn_look_is_a_no_op_with_randomisation_off():
    env = make_kettle_sink_env(randomization={"enabled": False})
    try:
        env.reset(seed=0)
        before = scene_arrays(env)
        env.unwrapped.redraw_look(np.random.default_rng(0))
        assert not changed(before, scene_arrays(env))
    finally:
        env.close()
