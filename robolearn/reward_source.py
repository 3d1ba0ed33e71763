"""Where an env's reward and success come from (`env.reward`): the env's own (the simulator, or an arm's marker
tracker), or the success classifier on the cameras (robolearn/success_classifier.py), which an arm computes without
a simulator or markers.

`env.reward.source`:
- `env`: the env's reward and success (the default).
- `classifier`: success is the classifier's, on the frozen encoder's features of the cameras; the episode ends
  there (`terminated`), as on an arm; the shaping is the task's (robolearn/task.py) on the encoder's estimated
  kettle, handle and sink positions and the hand's position from the joint encoders (forward kinematics).
- `both`: the env's shaping (an arm's tracker while it sees its markers), the classifier's success.

The env's own answer stays in `info` (`success`: in sim the simulator's truth, which evaluation reads;
`env_reward`), beside `classified_success` and `success_probability`. Where the classifier ends an episode in
sim, `success` is the simulator's judgement once the arm has stopped and the kettle had `judge_settle_s` to come
to rest (`success_at_end`: at the step it fired), as a person judges an arm's episode. Episodes end by the classifier, so the env
must not end them on its own success (`env.terminate_on_success=false`, checked in robolearn/config.py).
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np

from robolearn.config import RewardSourceConfig

class RecentEstimates:
    """An episode's last `window` estimated positions; each position read as their median (per coordinate), so
    one frame's jump in the encoder's estimate moves nothing."""

    KEYS = ("kettle_pos", "handle_pos", "sink_pos")

    def __init__(self, window: int):
        self._recent: deque[dict[str, np.ndarray]] = deque(maxlen=window)

    def clear(self) -> None:
        self._recent.clear()

    def add(self, estimate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._recent.append({k: np.asarray(estimate[k], np.float64) for k in self.KEYS})
        return {k: np.median([e[k] for e in self._recent], axis=0) for k in self.KEYS}


class ClassifierReward(gym.Wrapper):
    """The env with the classifier's success (and, for `classifier`, the estimate-based shaping) as its reward."""

    def __init__(self, env: gym.Env, cfg: RewardSourceConfig, task, robot):
        from robolearn.agents.pretrained import load_encoder
        from robolearn.success_classifier import load_classifier, read_meta

        super().__init__(env)
        self.cfg, self.task, self.robot = cfg, task, robot
        meta = read_meta(cfg.classifier)
        self.encoder = load_encoder(meta["encoder"], env.observation_space)
        self.classifier = load_classifier(cfg.classifier, self.encoder, max_false_positive=cfg.max_false_positive,
                                          max_false_negative=cfg.max_false_negative)
        net = self.encoder.net
        self._mean, self._std = net.target_mean.cpu().numpy(), net.target_std.cpu().numpy()
        self._recent = RecentEstimates(cfg.estimate_window)
        self._target_dim = len(self._mean)

    def _features(self, obs) -> np.ndarray:
        keys = (*self.encoder.image_keys, *self.encoder.proprio_keys)
        return self.encoder.features({k: np.asarray(obs[k])[None] for k in keys})[0]

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.classifier.reset()
        self._recent.clear()
        p = self.classifier.probability(self._features(obs))
        info.update(classified_success=False, success_probability=p)
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        features = self._features(obs)
        p = self.classifier.probability(features)
        success = p >= self.classifier.threshold
        bonus = self.task.success_bonus if success else 0.0
        if self.cfg.source == "classifier":
            reward = self.estimated_shaping(features, obs["joint_pos"]) + bonus
        else:  # both: the env's shaping without its own success bonus
            reward = float(env_reward) - float(info.get("reward_terms", {}).get("success_bonus", 0.0)) + bonus
        info.update(env_reward=float(env_reward), classified_success=bool(success), success_probability=p)
        judge = getattr(self.env.unwrapped, "success_after_stop", None)  # the sim's: an arm has no such judge
        if success and not terminated and self.cfg.judge_settle_s > 0 and judge is not None and "success" in info:
            info["success_at_end"] = bool(info["success"])
            info["success"] = bool(judge(self.cfg.judge_settle_s))
            if "outcome" in info and info["success"] != info["success_at_end"]:
                info["outcome"] = "success" if info["success"] else self.env.unwrapped.outcome(success=False)
        return obs, reward, bool(terminated or success), truncated, info

    def estimated_shaping(self, features: np.ndarray, joint_pos: np.ndarray) -> float:
        """The task's distance terms on the encoder's estimates: the kettle to the basin, the hand to the handle."""
        from robolearn.spec import split_privileged

        estimate = self._recent.add(split_privileged(features[-self._target_dim:] * self._std + self._mean))
        target = estimate["sink_pos"] + np.array([0.0, 0.0, self.cfg.kettle_bottom_offset])
        kettle_to_sink = float(np.linalg.norm(estimate["kettle_pos"] - target))
        hand_to_handle = float(np.linalg.norm(self.robot.tcp_position(np.asarray(joint_pos, np.float64)) - estimate["handle_pos"]))
        return -kettle_to_sink - self.task.reach_weight * hand_to_handle
