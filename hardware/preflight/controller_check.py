"""Pre-flight `controller`: what the controller says about itself, where the driver can ask (UR: the
dashboard server and RTDE). The arm must be the configured model, RUNNING with a NORMAL safety status,
in remote control, with a payload set that the arm is rated for (and the configured one, if given), and
able to take torques when the run commands them."""

from __future__ import annotations

from hardware.config import URDriverConfig
from hardware.preflight.report import FAIL, PASS, SKIP
from robolearn.config import ControlMode

PAYLOAD_TOLERANCE_KG = 0.1


def check_controller(pf) -> bool:
    driver, robot = pf.driver, pf.contract.robot
    status = driver.controller_status()
    if status is None:
        pf.add("controller", SKIP, f"the {driver.kind} driver reports no controller status")
        return True
    problems = []
    if status.model.upper().removesuffix("E") != status.expected_model.upper():
        problems.append(f"the controller is a {status.model}, the config describes a {robot.name} ({status.expected_model}): set env.robot to the arm you have")
    if status.robot_mode != "RUNNING":
        problems.append(f"robot mode {status.robot_mode}, not RUNNING (power on and release the brakes)")
    if status.safety_status != "NORMAL":
        problems.append(f"safety status {status.safety_status}, not NORMAL (inspect the arm; clear it on the pendant)")
    if status.remote_control is False:
        problems.append("not in remote control: switch the pendant to Remote Control (top right), or nothing can be commanded")
    if status.payload_kg is not None:
        if status.payload_kg <= 0:
            problems.append("no payload set in the installation (gripper and tool mass): the arm's model and stop detection would be off")
        elif status.payload_kg > robot.payload_max:
            problems.append(f"payload {status.payload_kg:.2f} kg is over the {robot.name}'s rated {robot.payload_max:.1f} kg")
        expected = pf.hw.driver.payload_kg if isinstance(pf.hw.driver, URDriverConfig) else None
        if expected is not None and abs(status.payload_kg - expected) > PAYLOAD_TOLERANCE_KG:
            problems.append(f"payload set to {status.payload_kg:.2f} kg, the config expects {expected:.2f} kg (env.hardware.driver.payload_kg)")
    if pf.cfg.control_mode is ControlMode.joint_torque and status.torque_control is False:
        problems.append(f"joint_torque needs direct torque control, which {status.software!r} does not have")
    data = {"model": status.model, "software": status.software, "robot_mode": status.robot_mode, "safety_status": status.safety_status,
            "remote_control": status.remote_control, "payload_kg": status.payload_kg}
    if problems:
        pf.add("controller", FAIL, "; ".join(problems), **data)
        return False
    remote = ", remote control" if status.remote_control else ""
    payload = "" if status.payload_kg is None else f", payload {status.payload_kg:.2f} kg"
    pf.add("controller", PASS, f"{status.model} on {status.software}, {status.robot_mode}, safety {status.safety_status}{remote}{payload}", **data)
    return True
