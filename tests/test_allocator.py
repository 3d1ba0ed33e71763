"""keep_freed_memory: a freed large buffer is reused without page faults (checked in a fresh process)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

PROBE = """
import resource, sys
import numpy as np
from robolearn.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults_of_a_64mb_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(64 << 20, np.uint8)
    a[::4096] = 1  # touch every page
    del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_64mb_buffer()
print(min(faults_of_a_64mb_buffer() for _ in range(3)))
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    # glibc's defaults give a 64 MB buffer back on free, so each new one faults in again: 16,384 faults of
    # 4 kB pages, or ~540 where transparent huge pages are on. Kept, the same memory is reused as it is.
    assert faults("default") > 200
    assert faults("keep") < 20
