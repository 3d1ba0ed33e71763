"""The Robotiq URCap gripper client against a fake URCap socket server on loopback.

The fake speaks the URCap's ASCII protocol: "SET <VAR> <int> ..." answered with a bare "ack", "GET <VAR>"
answered "<VAR> <int>\\n". It models activation (STA 0 -> 1 on ACT 1, then 3 after a few STA reads),
the measured POS stepping toward the request with every POS read once active and GTO 1, OBJ 3 at the
target, and an injectable FLT. Per-request overrides send a raw reply, close the connection or stay silent.
Everything is counted in requests, not time, so the tests are deterministic.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hardware.drivers.base import DriverConnectError, DriverError
from hardware.drivers.robotiq import RobotiqGripper
from tests.fake_urcap import CLOSE, SILENT, FakeURCap

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server():
    fake = FakeURCap()
    yield fake
    fake.stop()


@pytest.fixture
def gripper(server):
    g = RobotiqGripper("127.0.0.1", server.port, timeout_s=1.0)
    g.connect()
    yield g
    g.close()


def test_activation_goes_through_activating_to_active(server, gripper):
    gripper.activate(timeout_s=5.0)
    assert server.vars["STA"] == 3
    assert server.lines[:2] == ["GET STA", "SET ACT 1 GTO 1"]
    assert server.lines[2:] == ["GET STA"] * 2  # activating, then active
    server.lines.clear()
    gripper.activate()  # already active: one read, nothing set
    assert server.lines == ["GET STA"]


def test_activation_that_never_finishes_raises(server, gripper):
    server.activation_reads = 10**9
    with pytest.raises(DriverError, match=r"robotiq 127\.0\.0\.1:\d+: not active .*STA 1, FLT 0"):
        gripper.activate(timeout_s=0.1)


def test_move_sends_position_speed_force_and_go_in_one_line(server):
    g = RobotiqGripper("127.0.0.1", server.port, max_width=0.14, speed=128, force=40)
    g.connect()
    g.move_to_width(0.07)
    assert server.lines == ["SET POS 128 SPE 128 FOR 40 GTO 1"]  # round(255 * 0.5)
    g.close()


@pytest.mark.parametrize(
    ("width", "position"),
    [(0.0, 255), (0.085, 0), (0.0425, 128), (0.017, 204), (-0.01, 255), (0.2, 0), (float("inf"), None)],
)
def test_width_to_position_is_linear_and_clamped(server, gripper, width, position):
    if position is None:
        with pytest.raises(ValueError, match="finite"):
            gripper.move_to_width(width)
        assert server.lines == []
        return
    assert gripper.width_to_position(width) == position
    gripper.move_to_width(width)
    assert server.lines == [f"SET POS {position} SPE 255 FOR 100 GTO 1"]


def test_width_reads_the_measured_position_back_in_metres(server, gripper):
    gripper.activate()
    server.vars.update(POS=255, PRE=255)  # at rest where requested: the fake does not move it
    assert gripper.width() == pytest.approx(0.0)
    server.vars.update(POS=0, PRE=0)
    assert gripper.width() == pytest.approx(0.085)
    server.vars.update(POS=51, PRE=51)
    assert gripper.width() == pytest.approx(0.085 * 204 / 255)


def test_position_follows_the_request(server, gripper):
    gripper.activate()
    gripper.move_to_width(0.0)  # close: 255, the fake moves 100 per POS read
    widths = [gripper.width() for _ in range(3)]
    assert widths == pytest.approx([0.085 * 155 / 255, 0.085 * 55 / 255, 0.0])
    assert gripper.status() == {"sta": 3, "obj": 3, "flt": 0, "pos": 255}
    assert server.lines[-4:] == ["GET STA", "GET OBJ", "GET FLT", "GET POS"]


def test_fault_code_is_named(server, gripper):
    assert gripper.fault() is None
    server.vars["FLT"] = 14
    message = gripper.fault()
    assert "fault 14 (0x0E)" in message and "overcurrent" in message and "127.0.0.1" in message
    server.vars["FLT"] = 99
    assert "unknown code" in gripper.fault()
    assert gripper.status()["flt"] == 99


@pytest.mark.parametrize(
    ("request_line", "reply", "expect"),
    [
        ("GET POS", b"POS abc\n", r"'POS abc' instead of 'POS <integer>'"),
        ("GET POS", b"PRE 12\n", r"'PRE 12' instead of 'POS <integer>'"),
        ("GET POS", b"?\n", r"'\?' instead of 'POS <integer>'"),
        ("SET POS 0 SPE 255 FOR 100 GTO 1", b"nak\n", r"'nak' instead of 'ack'"),
    ],
)
def test_malformed_reply_raises_and_drops_the_connection(server, gripper, request_line, reply, expect):
    server.overrides[request_line] = reply
    with pytest.raises(DriverError, match=rf"robotiq 127\.0\.0\.1:{server.port}: sent '{request_line}', got {expect}"):
        gripper.width() if request_line.startswith("GET") else gripper.move_to_width(1.0)
    assert not gripper.is_connected
    with pytest.raises(DriverError, match="not connected"):
        gripper.width()
    server.overrides.clear()
    gripper.connect()  # a fresh connection works again
    assert gripper.width() == pytest.approx(0.085)


def test_server_closing_mid_request_raises(server, gripper):
    server.overrides["GET STA"] = CLOSE
    with pytest.raises(DriverError, match=r"sent 'GET STA', the server closed the connection"):
        gripper.status()
    assert not gripper.is_connected


def test_server_that_never_answers_times_out(server):
    server.overrides["GET FLT"] = SILENT
    g = RobotiqGripper("127.0.0.1", server.port, timeout_s=0.2)
    g.connect()
    start = time.monotonic()
    with pytest.raises(DriverError, match=r"127\.0\.0\.1.*sent 'GET FLT', no reply within 0\.2 s \(got b'' so far\)"):
        g.fault()
    assert time.monotonic() - start < 2.0
    g.close()


def test_connect_refused_names_the_address_and_the_hint():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    hint = r"Robotiq URCap installed and the gripper connected\?"
    expect = rf"robotiq 127\.0\.0\.1:{port}: cannot connect within 0\.5 s: .*{hint}"
    with pytest.raises(DriverConnectError, match=expect):
        RobotiqGripper("127.0.0.1", port, timeout_s=0.5).connect()


def test_close_twice_and_commands_after_close(server, gripper):
    gripper.close()
    gripper.close()
    assert not gripper.is_connected
    with pytest.raises(DriverError, match="not connected"):
        gripper.move_to_width(0.02)


def test_requests_from_two_threads_stay_paired(server, gripper):
    gripper.activate()
    errors: list[BaseException] = []

    def control() -> None:
        try:
            for i in range(40):
                gripper.move_to_width(0.002 * (i % 40))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watchdog() -> None:
        try:
            for _ in range(40):
                assert gripper.status()["sta"] == 3
                assert gripper.fault() is None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=control), threading.Thread(target=watchdog)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert errors == []
    assert server.lines.count("GET FLT") == 80


@pytest.mark.parametrize("kwargs", [dict(max_width=0.0), dict(speed=256), dict(force=-1), dict(timeout_s=0.0)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        RobotiqGripper("127.0.0.1", **kwargs)
