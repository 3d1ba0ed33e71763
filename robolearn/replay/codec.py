"""The one naming of observations among flat, named arrays: `obs/<key>` and `next_obs/<key>`, and the
layout of step records as flat arrays.

Flat arrays are what goes on the wire (chunks, batches), into replay files and into the server's mapped
store files; a dict observation is spread into them, and gathered back, only here.

A run of step records (an actor's chunk, what the replay server stores) is one array per field, one row per
record: a record is either the first observation of an episode (KIND_START) or a transition (KIND_STEP:
action, reward, end flags, the policy version that chose the action or who else did, and the next observation). Each
observation is held once: the next observation of one transition is the start of the following one.
"""

from __future__ import annotations

import numpy as np

from robolearn.replay.batch import Batch

OBS, NEXT_OBS = "obs/", "next_obs/"
KIND_START, KIND_STEP = 0, 1
# policy_version of a record whose action no policy chose: a uniformly random seed action (and an episode's
# first record), or an intervention (a person or the scripted intervener took over: robolearn/interventions.py).
SEED_ACTION_VERSION = -1
INTERVENTION_VERSION = -2
RECORD_FIELDS = {"kind": np.uint8, "reward": np.float32, "terminated": np.bool_, "truncated": np.bool_, "policy_version": np.int64}


def obs_name(key: str, prefix: str = OBS) -> str:
    return prefix + key


def flatten_obs(obs: dict[str, np.ndarray], prefix: str = OBS) -> dict[str, np.ndarray]:
    """{key: array} -> {"obs/key": array}."""
    return {prefix + key: value for key, value in obs.items()}


def unflatten_obs(arrays: dict[str, np.ndarray], prefix: str = OBS) -> dict[str, np.ndarray]:
    """The observation among flat arrays: {"obs/key": array, ...} -> {key: array}; other names are left out."""
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def batch_arrays(batch: Batch) -> dict[str, np.ndarray]:
    """A batch as flat arrays (the replay server's `batch` reply)."""
    arrays = {"action": batch.action, "reward": batch.reward, "discount": batch.discount,
              **flatten_obs(batch.obs, OBS), **flatten_obs(batch.next_obs, NEXT_OBS)}
    if batch.demo is not None:
        arrays["demo"] = batch.demo.astype(np.uint8)
    return arrays


def batch_from_arrays(arrays: dict[str, np.ndarray]) -> Batch:
    demo = arrays.get("demo")
    return Batch(obs=unflatten_obs(arrays, OBS), action=arrays["action"], reward=arrays["reward"],
                 discount=arrays["discount"], next_obs=unflatten_obs(arrays, NEXT_OBS),
                 demo=None if demo is None else np.asarray(demo).astype(bool))
