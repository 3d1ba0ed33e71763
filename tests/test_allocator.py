"""keep_freed_memory: a freed large buffer is reused without page faults; one_off_buffers hands big ones
back (each checked in a fresh process: the settings are process-wide)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

PROBE = """
import resource, sys
import numpy as np
from robolearn.process.allocator import keep_freed_memory, one_off_buffers
if sys.argv[1] in ("keep", "one-off"):
    assert keep_freed_memory()
def faults_of_a_buffer(mb=64):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(mb << 20, np.uint8)
    a[::4096] = 1  # touch every page
    del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_buffer()
if sys.argv[1] == "one-off":
    with one_off_buffers():  # bigger than any free block the kept heap holds (a replay save's copy)
        inside = min(faults_of_a_buffer(mb=128) for _ in range(3))
    faults_of_a_buffer()
    print(inside, min(faults_of_a_buffer() for _ in range(3)))
else:
    print(min(faults_of_a_buffer() for _ in range(3)))
"""


def faults(mode: str):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    values = [int(v) for v in out.stdout.split()]
    return values[0] if len(values) == 1 else values


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    # glibc's defaults give a 64 MB buffer back on free, so each new one faults in again: 16,384 faults of
    # 4 kB pages, or ~540 where transparent huge pages are on. Kept, the same memory is reused as it is.
    assert faults("default") > 200
    assert faults("keep") < 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_one_off_buffers_go_back_to_the_os_and_the_setting_returns_after():
    inside, after = faults("one-off")
    assert inside > 200  # handed back on free, so faulted in again
    assert after < 20
