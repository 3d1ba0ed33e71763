"""`python -m robolearn.dataset {export,import}`: the command line of robolearn.dataset.

Both take the env as a config of `configs/env/` (`--env`, default kettle_sink) plus Hydra overrides of it
(`env.robot=ur5e`, `env.privileged=true`): export reads the robot and the control rate from it, import
checks the dataset against its observation/action spec. Errors are one line naming the file and the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robolearn.config import ConfigError
from robolearn.dataset.export import export_dataset
from robolearn.dataset.importer import import_dataset
from robolearn.dataset.lerobot_format import TASK, DatasetError
from robolearn.paths import CONFIG_DIR
from robolearn.replay import ReplayFormatError


def env_config(name: str, overrides: list[str]) -> dict:
    """configs/env/<name>.yaml composed with its defaults and `overrides` (each starting with `env.`)."""
    bad = [o for o in overrides if not o.lstrip("+~").startswith("env.")]
    if bad:
        raise ConfigError(f"env overrides must start with 'env.': {bad}")
    known = sorted(p.stem for p in (Path(CONFIG_DIR) / "env").glob("*.yaml"))
    if name not in known:
        raise ConfigError(f"--env {name}: no such env config in configs/env (known: {', '.join(known)})")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+env={name}", *overrides])
    return OmegaConf.to_container(cfg.env, resolve=True)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m robolearn.dataset", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="replay/demo file or training run dir -> LeRobot v3.0 dataset")
    exp.add_argument("source", help="a replay file (demos/*.npz, teleop demos, interventions.npz) or a training run directory")
    exp.add_argument("out_dir", help="the dataset directory to write")
    exp.add_argument("--crf", type=int, default=0, help="libx264 crf of the videos (0: x264's lossless mode; default)")
    exp.add_argument("--pix-fmt", default="yuv444p", choices=["yuv444p", "yuv420p"],
                     help="yuv444p keeps colour at full resolution (default); yuv420p plays in browsers")
    exp.add_argument("--intervention", default="auto", choices=["auto", "true", "false"],
                     help="the per-frame intervention flag: auto = the file's own flags, else true for interventions.npz, "
                          "else left out (unknown)")
    exp.add_argument("--task", default=TASK, help=f"the task string (default: {TASK!r})")
    imp = sub.add_parser("import", help="LeRobot v3.0 dataset -> demo file for python -m robolearn.train demos.path=...")
    imp.add_argument("dataset", help="the dataset directory (with meta/info.json)")
    imp.add_argument("out", help="the replay file to write (.npz)")
    for p in (exp, imp):
        p.add_argument("--env", default="kettle_sink", help="env config name in configs/env (default: kettle_sink)")
        p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
        p.add_argument("overrides", nargs="*", help="env overrides, e.g. env.privileged=true env.robot=ur5e")
    return top


def main(argv: list[str] | None = None) -> int:
    p = parser()
    # Overrides may come after options: argparse leaves those among the unknown arguments.
    args, unknown = p.parse_known_args(argv)
    stray = [u for u in unknown if u.startswith("-")]
    if stray:
        p.error(f"unrecognized arguments: {' '.join(stray)}")
    overrides = [*args.overrides, *unknown]
    try:
        env = env_config(args.env, overrides)
        if args.command == "export":
            result = export_dataset(args.source, args.out_dir, env, crf=args.crf, pix_fmt=args.pix_fmt,
                                    intervention=args.intervention, task=args.task, overwrite=args.overwrite)
        else:
            result = import_dataset(args.dataset, args.out, env, overwrite=args.overwrite)
    except (DatasetError, ReplayFormatError, ConfigError, HydraException, OmegaConfBaseException) as exc:
        print(f"python -m robolearn.dataset {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
