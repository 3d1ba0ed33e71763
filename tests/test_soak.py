"""The soak run, shortened: 4 sim actors, a learner and the replay server (the 10-minute run: launch/soak.sh)."""

import pytest

from robolearn.transport.soak import main as soak


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_with_four_actors_loses_nothing_and_memory_stays_bounded(tmp_path):
    summary = soak(["--minutes", "1.5", "--actors", "4", "--capacity", "5000", "--run-dir", str(tmp_path)])
    assert summary["transitions_sent"] > 5000  # the buffer wrapped
    assert summary["no_loss"], summary
    assert summary["memory_bounded"], summary
