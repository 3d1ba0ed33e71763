"""The live view (robolearn/display.py): what a run writes, read back with rerun's own reader; a slow sink
drops frames instead of blocking the loop; bad display keys fail at start-up naming the key."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from robolearn.config import ConfigError, load_typed
from robolearn.display import DisplayConfig, LiveView

pytestmark = pytest.mark.timeout(120)

SMALL_CAMERAS = "env.cameras=[{name:front,width:32,height:24},{name:wrist,width:32,height:24}]"


def composed(config_name: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    from robolearn.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def evaluate(*overrides: str) -> dict:
    from robolearn.eval import EvalConfig, run

    return run(load_typed(EvalConfig, composed("eval", "episodes=1", "env.episode_seconds=1", "progress=false", *overrides), "eval"))


def recorded(path) -> tuple[dict[str, list[int]], dict[str, list]]:
    """Entity -> the step of each of its rows, and entity -> its rows as arrow batches (rerun's RrdReader)."""
    from rerun.chunk import RrdReader

    steps, batches = defaultdict(list), defaultdict(list)
    for chunk in RrdReader(path).stream():
        if chunk.is_static:
            continue
        batch = chunk.to_record_batch()
        name = chunk.entity_path.lstrip("/")
        assert {"step", "time"} <= set(chunk.timeline_names), name  # one timeline: step index and time
        steps[name] += batch.column("step").to_pylist()
        batches[name].append(batch)
    return steps, batches


def texts(batches: list) -> list[str]:
    return [t for b in batches for row in b.column("TextLog:text").to_pylist() for t in row]


def test_a_sim_run_writes_a_recording_with_every_stream(tmp_path):
    path = tmp_path / "run.rrd"
    result = evaluate("policy=random", SMALL_CAMERAS, "display.enabled=true", f"display.save={path}")
    assert result["display"]["frames"] == 11 and result["display"]["logged"] == 11 and result["display"]["dropped"] == 0
    steps, batches = recorded(path)
    # The reset's frame and ten steps (1 s at 10 Hz); what comes with an action has ten rows.
    for entity in ("cameras/front", "cameras/wrist", "joints/position", "joints/velocity", "gripper/opening", "reward/terms",
                   "success", "scene/tcp", "scene/kettle", "scene/handle", "scene/sink"):
        assert sorted(steps[entity]) == list(range(11)), entity
    for entity in ("action/policy", "reward/total"):
        assert sorted(steps[entity]) == list(range(1, 11)), entity
    assert "action/executed" not in steps  # the sim reports no command after a safety layer
    image = batches["cameras/front"][0].column("Image:format")[0].as_py()[0]
    assert (image["width"], image["height"]) == (32, 24)  # as the policy sees it
    assert len(batches["joints/position"][0].column("Scalars:scalars")[0]) == 7
    assert any("ended by truncated" in t for t in texts(batches["episodes"]))


def test_the_arm_on_the_fake_driver_logs_safety_events_and_timing(tmp_path):
    path = tmp_path / "arm.rrd"
    result = evaluate("env=real_fake", "env.hardware.loop.clock=virtual", "policy=random", "display.enabled=true", f"display.save={path}")
    assert result["display"]["dropped"] == 0
    steps, batches = recorded(path)
    for entity in ("action/executed", "timing/control"):  # the command after the safety layer; the loop's timing
        assert sorted(steps[entity]) == list(range(1, 11)), entity
    assert sorted(steps["safety/estop"]) == list(range(11))
    events = texts(batches["safety/events"])
    assert any(e.startswith("rate_limit/rate_limited: acceleration/jerk limited") for e in events)  # random actions from rest
    period, _, _ = batches["timing/control"][0].column("Scalars:scalars")[0].as_py()
    assert period == pytest.approx(100.0)


class SlowSink(LiveView):
    """A live view whose writing waits until the test lets it go: the worst viewer there is."""

    def __init__(self, *args):
        self.gate = threading.Event()
        super().__init__(*args)

    def write(self, item):
        self.gate.wait()
        super().write(item)


def test_a_full_queue_drops_frames_without_blocking_the_loop(tmp_path):
    view = SlowSink(DisplayConfig(enabled=True, save=str(tmp_path / "slow.rrd"), queue=4), "slow")
    obs = {"front": np.zeros((24, 32, 3), np.uint8), "joint_pos": np.zeros(7, np.float32)}
    began = time.perf_counter()
    view.start(obs, {})
    for _ in range(50):
        view.step(obs, np.zeros(8, np.float32), 0.0, {"success": False})
    elapsed = time.perf_counter() - began
    assert elapsed < 5.0  # 51 frames offered while the sink takes none: a blocking put would never return
    # Four wait in the queue, and the thread may hold one more: the rest are dropped, and counted.
    assert view.dropped in (46, 47)
    view.gate.set()
    stats = view.close()
    assert stats["frames"] == 51 and stats["logged"] == 51 - stats["dropped"] and stats["errors"] == 0
    steps, _ = recorded(tmp_path / "slow.rrd")
    assert len(steps["cameras/front"]) == stats["logged"]


def _schemas() -> None:
    for module in ("hardware.deploy.command", "hardware.teleop.command", "robolearn.roles.config", "robolearn.eval", "robolearn.train"):
        importlib.import_module(module)  # registers the command's schema


@pytest.mark.parametrize("name", ["eval", "train", "async_sim", "teleop", "deploy"])
def test_an_unknown_display_key_fails_naming_it(name):
    from hydra.errors import ConfigCompositionException

    _schemas()
    with pytest.raises(ConfigCompositionException, match="enabld"):
        composed(name, "display.enabld=true")


@pytest.mark.parametrize("overrides, named", [
    (["display.enabled=true", "display.queue=0"], "display.queue"),
    (["display.enabled=true", "display.save=run.txt"], "display.save"),
    (["display.save=run.rrd"], "display.enabled"),  # a file without the switch: said, not silently ignored
    (["display.enabled=true", "display.connect=http://learner:9876/proxy"], "display.connect"),
    (["display.enabled=true", "display.connect=learner:port"], "display.connect"),
])
def test_a_bad_display_value_fails_naming_the_key(overrides, named):
    from robolearn.eval import EvalConfig

    with pytest.raises(ConfigError, match=named):
        load_typed(EvalConfig, composed("eval", *overrides), "eval")


def test_a_viewer_address_becomes_rerun_url():
    assert DisplayConfig(enabled=True, connect="learner:9876").connect == "rerun+http://learner:9876/proxy"
    assert DisplayConfig(enabled=True, connect="10.0.0.5").connect == "rerun+http://10.0.0.5:9876/proxy"
    assert DisplayConfig(enabled=True, connect="rerun+http://learner:9000/proxy").connect == "rerun+http://learner:9000/proxy"


def test_the_command_fails_at_start_up_naming_the_display_key(tmp_path):
    cmd = [sys.executable, "-m", "robolearn.eval", "display.enabled=true", "display.queue=0", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert result.returncode != 0
    assert "display.queue" in result.stderr
