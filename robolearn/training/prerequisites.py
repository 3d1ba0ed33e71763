"""What a training run needs before its first step, made when missing (as a fresh checkout has neither):
the pixel recipe's frozen encoder and the demo file. Both runners call these; the async runner before it
starts any role, so the replay server and the actors find the files they read."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from tqdm import tqdm

from robolearn.agents.pretrained import EncoderFileError
from robolearn.config import ConfigError, EnvConfig, load_typed
from robolearn.paths import CONFIG_DIR
from robolearn.replay import ReplayStorage
from robolearn.rollout import Step, run_episode
from robolearn.spec import EnvSpec

log = logging.getLogger(__name__)

DEMO_SEED = 10_000_000  # demo seeds are fixed (the cached file is shared by runs) and disjoint from training and eval seeds


def ensure_encoder(cfg) -> None:
    """The pixel recipe's frozen encoder: made from the project's own sim data when its file is missing
    (nothing is downloaded), so the main job runs on a fresh machine. Without `pretrain_if_missing` the
    agent refuses the missing file with the command that makes it."""
    if cfg.agent.encoder != "pretrained" or not cfg.agent.encoder_weights:
        return
    path = Path(cfg.agent.encoder_weights)
    if path.is_file():
        check_encoder_robot(path, cfg.env)
        if cfg.pretrain_overrides:
            check_encoder_recipe(path, pretrain_config(cfg, path), cfg.pretrain_overrides)
        return
    if not cfg.pretrain_if_missing:
        return
    from robolearn.pretrain import pretrain

    log.warning("no pretrained encoder at %s: making it first (python -m robolearn.pretrain out=%s; see configs/pretrain.yaml)", path, path)
    pretrain(pretrain_config(cfg, path))


def pretrain_config(cfg, path: Path):
    """The pretraining a run asks for (configs/pretrain.yaml with its `pretrain_overrides`), in the run's env."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robolearn.pretrain import PretrainConfig  # registers the pretrain schema the compose needs

    # The one-off pretraining uses every core (torch_threads=0: measured 24 s an epoch on two threads against 42 s
    # on one); the run's own thread count is set after it.
    overrides = [f"out={path}", f"progress={cfg.progress}", "torch_threads=0", f"device={cfg.device}",
                 *cfg.pretrain_overrides]
    if GlobalHydra.instance().is_initialized():
        pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    else:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            pretrain_cfg = compose(config_name="pretrain", overrides=overrides)
    # The same cameras and scene as the run.
    return dataclasses.replace(load_typed(PretrainConfig, pretrain_cfg, "pretrain"), env=cfg.env)


def check_encoder_recipe(path: Path, asked, pretrain_overrides: list[str]) -> None:
    """An existing encoder file is used only if it was made as the run's `pretrain_overrides` ask: its name
    covers the robot and cameras, not the pretraining's settings, so an encoder made another way (fewer
    episodes, no look per frame, warps) would otherwise be taken silently in the asked one's place."""
    from robolearn.pretrain import recipe_mismatches

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        meta = payload.get("meta") or payload.get("encoder_meta")  # an encoder file, or a checkpoint carrying one
    except Exception:  # unreadable or foreign: the agent's load names the problem
        return
    if not isinstance(meta, dict):
        return
    keys = [o.lstrip("+~").split("=", 1)[0] for o in pretrain_overrides]
    differ = recipe_mismatches(meta, asked, keys)
    if differ:
        said = "; ".join(f"{k}: the file {have!r}, asked {want!r}" for k, (have, want) in differ.items())
        raise EncoderFileError(f"pretrained encoder {path} was made with other pretraining settings than pretrain_overrides="
                               f"{list(pretrain_overrides)} ask ({said}): point agent.encoder_weights at another file "
                               f"(it is made there on first use) or move this one away")


def check_encoder_robot(path: Path, env_cfg) -> None:
    """An existing encoder file made for another robot is refused, not used: arms of the same joint count
    (Panda and FR3, the UR sizes) give it the same input shapes, which the agent checks, but other images."""
    try:
        robot = EnvSpec.from_config(env_cfg).robot.name
        meta = torch.load(path, map_location="cpu", weights_only=False).get("meta", {})
    except Exception:  # not a kettle env, or an unreadable or foreign file: the agent's load names the problem
        return
    made_for = meta.get("robot")
    if made_for is not None and made_for != robot:
        raise EncoderFileError(f"pretrained encoder {path} was made for the {made_for}, not the {robot}: leave agent.encoder_weights "
                               f"at its default (each robot and camera set has its own file, made on first use) or point it at "
                               f"an encoder made with `python -m robolearn.pretrain env.robot={robot}`")


def load_or_collect_demos(cfg, env, progress: bool = True, view=None) -> ReplayStorage | None:
    """The run's demos with their images: from `demos.path` when the file exists, else collected by the
    demonstrator (and written to `demos.path` when set). None when `demos.episodes` is 0."""
    settings = cfg.demos
    if not settings.episodes:
        return None
    obs_space, act_space = env.observation_space, env.action_space
    path = Path(settings.path) if settings.path else None
    if path is not None and path.exists():
        store = ReplayStorage.load(path, obs_space, act_space.shape)
        log.info("loaded %d demo transitions from %s", store.num_transitions(), path)
        return store
    env_cfg = getattr(env.unwrapped, "cfg", None)
    if not isinstance(env_cfg, EnvConfig):
        raise ConfigError(
            f"demos.episodes={settings.episodes}: demos are collected by the kettle-to-sink demonstrator "
            f"({settings.policy.get('_target_', settings.policy)}), which this env ({type(env.unwrapped).__name__}) cannot run; "
            "set demos.episodes=0 or point demos.path at a recorded file"
        )
    store = ReplayStorage(obs_space, act_space.shape, settings.episodes * (env_cfg.max_episode_steps + 1))
    expert = instantiate(settings.policy, env=env)
    successes = 0
    bar = tqdm(range(settings.episodes), desc="demos", unit="ep", disable=not progress)
    for i in bar:
        expert.reset()
        episode = run_episode(env, expert.act, seed=DEMO_SEED + i, on_start=lambda obs, _: store.start_episode(obs),
                              record=lambda step: store_step(store, step), view=view)
        successes += episode.success
        bar.set_postfix(success=f"{successes}/{i + 1}")
    log.info("collected %d demo episodes (%d successful, %d transitions)", settings.episodes, successes, store.num_transitions())
    if path is not None:
        store.save(path)
    return store


def store_step(replay: ReplayStorage, step: Step) -> None:
    replay.add(step.action, step.reward, step.terminated, step.truncated, step.next_obs)
