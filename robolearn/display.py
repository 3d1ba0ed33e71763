"""The live view: every run that acts, streamed to a rerun viewer or saved to an .rrd file (docs/watching.md).

    python -m robolearn.eval policy=expert episodes=1 display.enabled=true display.save=runs/expert.rrd
    python -m hardware.deploy checkpoint=... display.enabled=true display.connect=learner-box:9876

The episode loop (`robolearn.rollout.run_episode`, its `view` hook) hands the view every observation as the
env gave it (camera images, not an encoder's features), the action, reward and info. On the loop's side a
step costs a time stamp and a `put_nowait` of references on a bounded queue (microseconds); a background
thread turns it into rerun calls. A full queue drops the frame and counts it: the control loop never waits
for the viewer, the disk or the network.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from robolearn.config import check

log = logging.getLogger(__name__)

APP_ID = "robolearn"
DEFAULT_PORT = 9876  # rerun's viewer listens here by default
# Scene points the envs report in info (the sim: all four; the arm: the TCP, from forward kinematics).
SCENE = {"tcp_pos": ("tcp", (230, 60, 60)), "kettle_pos": ("kettle", (60, 120, 230)),
         "handle_pos": ("handle", (240, 200, 40)), "sink_pos": ("sink", (80, 200, 120))}
_STOP = object()


@dataclass
class DisplayConfig:
    enabled: bool = False  # alone: stream to a viewer on this machine (`rerun`, port 9876)
    save: str | None = None  # write the recording to this .rrd file
    connect: str | None = None  # stream to a viewer elsewhere: host:port or rerun+http://host:port/proxy
    queue: int = 64  # frames waiting for the logging thread; beyond that they are dropped (and counted)
    close_timeout_s: float = 15.0  # at the end, how long to wait for the file or the viewer to take the rest

    def __post_init__(self) -> None:
        check(self.queue >= 1, "display.queue", self.queue, "must be positive")
        check(self.close_timeout_s > 0, "display.close_timeout_s", self.close_timeout_s, "must be positive")
        if self.save is not None:
            check(str(self.save).endswith(".rrd"), "display.save", self.save, "an .rrd file")
        if self.connect is not None:
            self.connect = viewer_url(self.connect)
        check(self.enabled or (self.save is None and self.connect is None), "display.enabled", self.enabled,
              "display.save or display.connect is set: add display.enabled=true")


def viewer_url(value: str) -> str:
    """host[:port] or a rerun URL -> the URL rerun connects to; a bad one fails naming display.connect."""
    value = str(value).strip()
    if "://" not in value:
        host, _, port = value.rpartition(":") if ":" in value else (value, "", str(DEFAULT_PORT))
        check(bool(host) and port.isdigit(), "display.connect", value, "host:port or rerun+http://host:port/proxy")
        value = f"rerun+http://{host}:{port}/proxy"
    import rerun as rr

    try:
        rr.GrpcSink(value)  # parses the URL; connects only when a recording uses it
    except Exception as exc:  # noqa: BLE001 (rerun raises several kinds)
        check(False, "display.connect", value, str(exc))
    return value


def open_view(cfg: DisplayConfig | None, name: str) -> LiveView | None:
    """A live view named `name` (the recording's name in the viewer), or None when the display is off."""
    if cfg is None or not cfg.enabled:
        return None
    return LiveView(cfg, name)


class LiveView:
    """The view hook of `run_episode`: `start(obs, info)`, `step(obs, action, reward, info)`, `end(episode)`;
    `close()` once at the end of the run, which reports what was logged and dropped."""

    def __init__(self, cfg: DisplayConfig, name: str):
        import rerun as rr
        import rerun.blueprint  # imported now, before the loop runs, not on the thread mid-run

        self.cfg, self.name = cfg, name
        self.label = ""  # said in the episode log entries (training: "eval" while it evaluates)
        self.rec = rr.RecordingStream(APP_ID)
        self.sinks: list[Any] = []
        if cfg.save:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.save)), exist_ok=True)
            self.sinks.append(rr.FileSink(str(cfg.save)))
        self.url = url = cfg.connect or (None if cfg.save else f"rerun+http://127.0.0.1:{DEFAULT_PORT}/proxy")
        if url:
            self.sinks.append(rr.GrpcSink(url))
        self.where = " and ".join(filter(None, [cfg.save and f"saved to {cfg.save}", url and f"streamed to {url}"]))
        self.frames = self.dropped = self.episodes = 0  # the loop's side
        self.written = self.errors = 0  # the thread's side
        self._costs: deque[float] = deque(maxlen=100_000)  # seconds per hook call, on the loop's side
        self._t0 = time.perf_counter()
        self._queue: queue.Queue = queue.Queue(cfg.queue)
        self._closed = False
        self._writer = FrameWriter(self.rec)
        self._thread = threading.Thread(target=self._run, name=f"live-view-{name}", daemon=True)
        self._thread.start()

    # -- the loop's side: references on a queue, never a wait -----------------------------------------
    def start(self, obs: dict, info: dict) -> None:
        self.episodes += 1
        self._put("start", obs, None, None, info)

    def step(self, obs: dict, action, reward: float, info: dict) -> None:
        self._put("step", obs, np.array(action, dtype=np.float32), float(reward), info)

    def end(self, episode) -> None:
        summary = {"seed": episode.seed, "success": episode.success, "return": episode.episode_return,
                   "length": episode.length, "ended_by": episode.ended_by}
        self._put("end", None, None, None, summary)

    def _put(self, kind: str, obs, action, reward, info) -> None:
        began = time.perf_counter()
        index = self.frames - 1 if kind == "end" else self.frames  # an episode's end is stamped on its last frame
        item = (kind, index, began - self._t0, self.episodes, self.label, obs, action, reward, info)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += kind != "end"  # frames lost to a full queue
        if kind != "end":
            self.frames += 1  # the step timeline counts frames offered, so drops leave gaps, not shifts
        self._costs.append(time.perf_counter() - began)

    # -- the logging thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per thread; yields CPU to the loop
        except (AttributeError, OSError):
            pass
        if self.url:
            where = urlsplit(self.url)
            try:
                socket.create_connection((where.hostname, where.port or DEFAULT_PORT), timeout=1.0).close()
            except OSError as exc:  # rerun keeps trying; say why nothing shows up yet
                log.warning("live view: no viewer answers at %s (%s); start one there (`rerun`, docs/watching.md)", self.url, exc)
        try:
            self.rec.send_recording_name(self.name)
            self.rec.set_sinks(*self.sinks)  # waits up to seconds for a viewer that is not up: here, not in the loop
            opened = True
        except Exception:
            log.exception("live view: cannot open its sinks; frames are discarded")
            self.errors, opened = self.errors + 1, False
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if not opened:
                continue  # drained, so the loop keeps going; nothing piles up in memory
            try:
                self.write(item)
                self.written += item[0] != "end"
            except Exception:  # a view must never take the run down
                self.errors += 1
                if self.errors == 1:
                    log.exception("live view: a frame could not be logged (further errors are counted)")
        try:
            self.rec.flush(timeout_sec=self.cfg.close_timeout_s)
        except Exception as exc:  # noqa: BLE001 (a viewer gone away: said, not raised at the end of a run)
            log.warning("live view: not everything reached its sinks: %s", exc)
        finally:
            self.rec.disconnect()  # the file sink writes its footer

    def write(self, item: tuple) -> None:
        """One queued frame into rerun calls (on the logging thread)."""
        self._writer.write(*item)

    # -- the end --------------------------------------------------------------------------------------
    def close(self) -> dict:
        """Hand the thread the rest, wait (at most `close_timeout_s`) and report: frames, drops, loop cost."""
        if not self._closed:
            self._closed = True
            deadline = time.monotonic() + self.cfg.close_timeout_s
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    self._queue.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("live view: its thread did not finish within %.0f s", self.cfg.close_timeout_s)
            stats = self.stats()
            log.info("live view: %d frames, %d logged, %d dropped (queue full); loop cost %.1f µs/step (p99 %.1f, max %.1f); %s",
                     stats["frames"], stats["logged"], stats["dropped"], stats["loop_us_mean"], stats["loop_us_p99"],
                     stats["loop_us_max"], self.where)
        return self.stats()

    def stats(self) -> dict:
        costs = np.asarray(self._costs) * 1e6 if self._costs else np.zeros(1)
        return {"frames": self.frames, "logged": self.written, "dropped": self.dropped, "errors": self.errors,
                "loop_us_mean": round(float(costs.mean()), 2), "loop_us_p99": round(float(np.percentile(costs, 99)), 2),
                "loop_us_max": round(float(costs.max()), 2), "save": self.cfg.save}


class FrameWriter:
    """Frames into entities (the list is in docs/watching.md): cameras/<key>, joints/{position,velocity},
    gripper/opening, action/{policy,executed}, reward/{total,terms}, success, safety/{events,estop},
    timing/{control,step_ms,events}, scene/{tcp,kettle,handle,sink,tcp_path}, episodes."""

    def __init__(self, rec):
        self.rec = rec
        self.named: set[str] = set()  # series whose names are logged (once, static)
        self.blueprint_sent = False
        self.last_seconds: float | None = None
        self.path: list = []  # the TCP's positions this episode

    def write(self, kind, index, seconds, episode, label, obs, action, reward, info) -> None:
        import rerun as rr

        rec = self.rec
        rec.set_time("step", sequence=index)
        rec.set_time("time", duration=seconds)
        tag = f"{label} episode" if label else "episode"
        if kind == "end":
            outcome = "success" if info["success"] else "no success"
            rec.log("episodes", rr.TextLog(f"{tag} {episode} (seed {info['seed']}) ended by {info['ended_by']}: {outcome}, "
                                           f"return {info['return']:.2f}, {info['length']} steps", level="INFO"))
            return
        if kind == "start":
            rec.log("episodes", rr.TextLog(f"{tag} {episode} starts", level="INFO"))
            self.last_seconds = None
        images = [k for k, v in obs.items() if isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 3 and v.shape[-1] == 3]
        if not self.blueprint_sent:
            rec.send_blueprint(blueprint(images), make_active=True, make_default=True)  # a live viewer has made its own by now
            rec.log("scene", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
            self.blueprint_sent = True
        for key in images:
            rec.log(f"cameras/{key}", rr.Image(obs[key], color_model="RGB"))
        n = len(obs["joint_pos"]) if "joint_pos" in obs else 0
        joints = [f"j{i + 1}" for i in range(n)]
        self.series("joints/position", obs.get("joint_pos"), joints)
        self.series("joints/velocity", obs.get("joint_vel"), joints)
        self.series("gripper/opening", obs.get("gripper"), ["opening (m)"])
        if kind == "step":
            self.series("action/policy", action, [*joints, "gripper"])
            executed = [f"{name} executed" for name in (*joints, "gripper")]
            self.series("action/executed", info.get("executed_action"), executed)  # after the safety layer
            self.series("reward/total", [reward], ["reward"])
            if self.last_seconds is not None:
                self.series("timing/step_ms", [1000.0 * (seconds - self.last_seconds)], ["loop period (ms)"])
            self.last_seconds = seconds
        terms = info.get("reward_terms")
        if terms:
            self.series("reward/terms", list(terms.values()), list(terms))
        if "success" in info:
            self.series("success", [float(info["success"])], ["success"])
        self.safety(info.get("safety"))
        self.timing(info.get("timing"))
        for key, (name, colour) in SCENE.items():
            if key in info:
                rec.log(f"scene/{name}", rr.Points3D([info[key]], radii=0.012, colors=[colour], labels=[name]))
        if "tcp_pos" in info:  # the hand's path this episode
            self.path = [] if kind == "start" else self.path[-500:]
            self.path.append(info["tcp_pos"])
            rec.log("scene/tcp_path", rr.LineStrips3D([self.path], colors=[SCENE["tcp_pos"][1]], radii=0.003))

    def series(self, path: str, values, names: list[str]) -> None:
        import rerun as rr

        if values is None:
            return
        values = np.asarray(values, dtype=np.float64).ravel()
        if path not in self.named and len(names) == len(values):
            self.rec.log(path, rr.SeriesLines(names=names), static=True)
            self.named.add(path)
        self.rec.log(path, rr.Scalars(values))

    def safety(self, safety: dict | None) -> None:
        """Every safety event as a log entry (a fatal one, which latches the e-stop, as an error)."""
        import rerun as rr

        if not safety:
            return
        for event in safety.get("events", ()):
            level = "ERROR" if event.get("fatal") else "WARN"
            self.rec.log("safety/events", rr.TextLog(f"{event.get('layer')}/{event.get('kind')}: {event.get('message')}", level=level))
        self.series("safety/estop", [float(bool(safety.get("estop")))], ["e-stop latched"])

    def timing(self, timing: dict | None) -> None:
        import rerun as rr

        if not timing:
            return
        self.series("timing/control", [timing.get(k, np.nan) for k in ("period_ms", "lateness_ms", "agent_ms")],
                    ["period (ms)", "lateness (ms)", "agent (ms)"])
        if timing.get("deadline_missed"):
            self.rec.log("timing/events", rr.TextLog(f"deadline missed by {timing.get('lateness_ms', np.nan):.1f} ms", level="WARN"))


def blueprint(image_keys: list[str]):
    """The default layout: cameras over the 3-D scene; joints, actions and reward; events, gripper, success, timing."""
    import rerun.blueprint as rrb

    def plot(origin: str, name: str | None = None):
        return rrb.TimeSeriesView(origin=origin, name=name or origin)

    cameras = [rrb.Spatial2DView(origin=f"cameras/{key}", name=key) for key in image_keys]
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Vertical(rrb.Horizontal(*cameras), rrb.Spatial3DView(origin="scene", name="scene")),
            rrb.Vertical(plot("joints/position", "joint position (rad)"), plot("joints/velocity", "joint velocity (rad/s)"),
                         plot("action", "action: policy and executed"), plot("reward")),
            rrb.Vertical(rrb.TextLogView(origin="episodes", name="episodes"), rrb.TextLogView(origin="safety", name="safety events"),
                         plot("gripper", "gripper opening (m)"), plot("timing", "timing (ms)"),
                         rrb.TimeSeriesView(origin="/", contents=["/success", "/safety/estop"], name="success, e-stop")),
            column_shares=[2, 2, 1.3],
        ),
        rrb.TimePanel(timeline="step", state="collapsed"),
        collapse_panels=True,
    )
