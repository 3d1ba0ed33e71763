"""Where the repository's Hydra configs live (the top-level `configs/` folder), and the names of the files
the configs cache on disk (demos, pretrained encoders), which say what the files hold.

The configs name those files through two resolvers registered here (every entry point imports this module
for CONFIG_DIR before Hydra composes):

    demos/kettle_sink_${demo_tag:${env}}_${demos.episodes}.npz   ->  demos/kettle_sink_panda_joint_velocity_front84-wrist84_privileged_<hash>_20.npz
    encoders/kettle_sink_${encoder_tag:${env}}.pt                ->  encoders/kettle_sink_panda_front84-wrist84_<hash>.pt

`python -m robolearn.paths [train overrides]` prints the names a training run would use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO_ROOT / "configs")


def _env_node(env) -> dict:
    return OmegaConf.to_container(env, resolve=True) if isinstance(env, DictConfig) else dict(env or {})


def _tag(kind: str, env) -> str:
    from robolearn import spec
    from robolearn.config import ConfigError

    try:
        return getattr(spec, kind)(_env_node(env))
    except ConfigError:
        # Not a valid kettle env config: the env's own check names the problem when the env is built
        # (before any file is read or written), so the name never gets used.
        return "invalid_env"


def _demo_tag(env) -> str:
    return _tag("demo_tag", env)


def _encoder_tag(env) -> str:
    return _tag("encoder_tag", env)


for _name, _resolver in (("demo_tag", _demo_tag), ("encoder_tag", _encoder_tag)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver, use_cache=False)


def file_names(overrides: list[str], config_name: str = "train") -> dict[str, str | None]:
    """The demo and encoder files a run of `config_name` with these overrides uses."""
    from hydra import compose, initialize_config_dir

    import robolearn.train  # noqa: F401  (registers the schemas the configs start from)
    import robolearn.roles.config  # noqa: F401

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    demos = cfg.demos.path if "demos" in cfg else cfg.server.demos
    return {"demos": demos, "encoder": cfg.agent.encoder_weights if cfg.agent.encoder == "pretrained" else None}


def main(argv: list[str]) -> None:
    config_name = "train"
    if argv[:1] == ["--config-name"]:
        config_name, argv = argv[1], argv[2:]
    for kind, name in file_names(argv, config_name).items():
        print(f"{kind}: {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
