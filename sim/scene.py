"""Composes the kettle-to-sink scene from its entities and compiles it to a MuJoCo model."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from dm_control import mjcf

from robolearn.camera_calibration import load_sim_camera
from robolearn.config import ConfigError, EnvConfig
from robolearn.robots import RobotDescription, get_robot
from sim import kettle as kettle_entity
from sim.arm import build_arm
from sim.geometry import look_at_xyaxes
from sim.kitchen import build_kitchen


@dataclass
class Scene:
    """A compiled scene and the indices the env needs, looked up once."""

    model: mujoco.MjModel
    robot: RobotDescription
    arm_qpos: np.ndarray  # qpos addresses of the arm joints
    arm_dof: np.ndarray  # dof addresses of the arm joints
    finger_qpos: np.ndarray
    arm_actuators: np.ndarray
    gripper_actuator: int
    kettle_qpos: int  # start of the kettle's free joint (pos 3, quat 4)
    kettle_dof: int
    kettle_body: int
    handle_site: int
    tcp_site: int
    sink_site: int
    camera_ids: dict[str, int]
    kettle_geoms: np.ndarray
    counter_geoms: np.ndarray
    lights: np.ndarray


def build_mjcf(cfg: EnvConfig) -> mjcf.RootElement:
    robot = get_robot(cfg.robot)
    root = build_kitchen(walls=cfg.room_walls)
    root.model = "kettle_to_sink"
    root.option.timestep = 1.0 / cfg.physics_hz
    root.option.integrator = "implicitfast"
    # Elliptic cones with a high impratio keep a frictional grasp from creeping.
    root.option.cone = "elliptic"
    root.option.impratio = 10
    root.visual.quality.shadowsize = cfg.render.shadow_map_size
    root.visual.quality.offsamples = cfg.render.multisamples
    root.visual.quality.numslices = cfg.render.primitive_slices
    root.visual.quality.numstacks = max(2, cfg.render.primitive_slices // 2)
    root.visual.quality.numquads = 1
    width = max([640] + [c.width for c in cfg.cameras])
    height = max([480] + [c.height for c in cfg.cameras])
    getattr(root.visual, "global").offwidth = width
    getattr(root.visual, "global").offheight = height

    arm = build_arm(robot, cfg.control_mode, cfg.gravity_compensation)
    root.find("site", "robot_mount").attach(arm)
    kettle_frame = root.worldbody.attach(kettle_entity.build_kettle())
    kettle_frame.add("freejoint", name="kettle")
    place_cameras(root, cfg, robot)
    return root


def place_cameras(root: mjcf.RootElement, cfg: EnvConfig, robot: RobotDescription) -> None:
    """Set the pose and field of view a camera config gives (`front`: in the base frame, `wrist`: the hand's),
    or, with `calibration`, those of the bench's calibrated camera (robolearn.camera_calibration)."""
    for cam in cfg.cameras:
        element = root.find("camera", cam.name) or root.find("camera", f"{robot.name}/{cam.name}")
        if element is None:
            continue  # the scene's camera check names it (compile_scene)
        if cam.calibration:
            key = f"env.cameras.{cam.name}.calibration"
            if element.parent is not root.worldbody:
                # The file holds base_from_camera: right for a camera fixed in the base frame (the robot base
                # is the world origin here), not for one that moves with the hand (that needs hand-eye).
                raise ConfigError(f"invalid value for {key}: {cam.calibration!r} (camera {cam.name!r} moves with the arm: it needs "
                                  "hand_from_camera (a hand-eye calibration), which calibration files do not hold; only static cameras such as 'front')")
            pose = load_sim_camera(cam.calibration, cam.width, cam.height, key)
            element.pos, element.xyaxes, element.quat = pose.pos.tolist(), None, pose.quat.tolist()
            element.fovy = pose.fovy
            continue
        if cam.fovy is not None:
            element.fovy = float(cam.fovy)
        if cam.pos is None:
            continue
        element.pos = [float(v) for v in cam.pos]
        if cam.quat is not None:
            element.xyaxes, element.quat = None, [float(v) for v in cam.quat]
        elif cam.look_at is not None:
            element.quat, element.xyaxes = None, look_at_xyaxes(cam.pos, cam.look_at, up=cam.up)


def compile_scene(cfg: EnvConfig) -> Scene:
    root = build_mjcf(cfg)
    model = mujoco.MjModel.from_xml_string(root.to_xml_string(), root.get_assets())
    robot = get_robot(cfg.robot)

    def jnt(name: str) -> int:
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

    def obj_id(kind, name: str) -> int:
        idx = mujoco.mj_name2id(model, kind, name)
        if idx < 0:
            raise KeyError(f"scene has no {kind.name} named {name!r}")
        return idx

    prefix = f"{robot.name}/"
    arm_joints = [jnt(prefix + n) for n in robot.joint_names]
    fingers = [jnt(prefix + "finger_left"), jnt(prefix + "finger_right")]
    kettle_joint = jnt("kettle/")
    kettle_body = obj_id(mujoco.mjtObj.mjOBJ_BODY, "kettle/kettle")
    cameras = {}
    for cam in cfg.cameras:
        for candidate in (cam.name, prefix + cam.name):
            idx = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, candidate)
            if idx >= 0:
                cameras[cam.name] = idx
                break
        else:
            raise KeyError(f"env.cameras: the sim has no camera named {cam.name!r} (it has 'front' and 'wrist')")
    counter_body = obj_id(mujoco.mjtObj.mjOBJ_BODY, "counter")
    return Scene(
        model=model,
        robot=robot,
        arm_qpos=model.jnt_qposadr[arm_joints].copy(),
        arm_dof=model.jnt_dofadr[arm_joints].copy(),
        finger_qpos=model.jnt_qposadr[fingers].copy(),
        arm_actuators=np.array([obj_id(mujoco.mjtObj.mjOBJ_ACTUATOR, prefix + a) for a in _actuator_names(cfg, robot)]),
        gripper_actuator=obj_id(mujoco.mjtObj.mjOBJ_ACTUATOR, prefix + "gripper"),
        kettle_qpos=int(model.jnt_qposadr[kettle_joint]),
        kettle_dof=int(model.jnt_dofadr[kettle_joint]),
        kettle_body=kettle_body,
        handle_site=obj_id(mujoco.mjtObj.mjOBJ_SITE, "kettle/handle"),
        tcp_site=obj_id(mujoco.mjtObj.mjOBJ_SITE, prefix + "tcp"),
        sink_site=obj_id(mujoco.mjtObj.mjOBJ_SITE, "sink"),
        camera_ids=cameras,
        kettle_geoms=np.flatnonzero(model.geom_bodyid == kettle_body),
        counter_geoms=np.flatnonzero(model.geom_bodyid == counter_body),
        lights=np.arange(model.nlight),
    )


def _actuator_names(cfg: EnvConfig, robot: RobotDescription) -> list[str]:
    suffix = "velocity" if cfg.control_mode.value == "joint_velocity" else "torque"
    return [f"{n}_{suffix}" for n in robot.joint_names]
