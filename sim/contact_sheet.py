"""A contact sheet of randomised camera frames: what the policy sees under env.randomization.

    python -m sim.contact_sheet out=docs/img/randomization_contact_sheet.png [seeds=8] [scale=2] [env.KEY=VALUE ...]

The first column is the nominal scene (randomisation off); each further column is one seeded reset; one row per
camera (front, wrist), at the env's own image size (84x84 by default) upscaled `scale` times, nearest-neighbour.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np


def frames(seed: int | None, overrides: dict) -> list[np.ndarray]:
    """The cameras' first frames after reset(seed); None: the nominal scene."""
    from sim import make_kettle_sink_env

    if seed is None:
        overrides = {**overrides, "randomization": {**overrides.get("randomization", {}), "enabled": False}}
    env = make_kettle_sink_env(**overrides)
    try:
        obs, _ = env.reset(seed=seed or 0)
        return [obs[name] for name, _, _ in env.unwrapped.contract.cameras]
    finally:
        env.close()


def contact_sheet(seeds: list[int], overrides: dict, scale: int = 2, gap: int = 2) -> np.ndarray:
    """Columns of frames (nominal first, then one per seed), one row per camera, separated by white lines."""
    columns = []
    for seed in [None, *seeds]:
        images = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for f in frames(seed, overrides)]
        w = images[0].shape[1]
        spacer = np.full((gap, w, 3), 255, np.uint8)
        column = np.concatenate([x for image in images for x in (image, spacer)][:-1], axis=0)
        columns += [column, np.full((column.shape[0], gap, 3), 255, np.uint8)]
    return np.concatenate(columns[:-1], axis=1)


def _parse(argv: list[str]) -> tuple[dict, dict]:
    from omegaconf import OmegaConf

    options = {"out": "docs/img/randomization_contact_sheet.png", "seeds": 8, "scale": 2}
    env_items = []
    for item in argv:
        key, _, value = item.partition("=")
        if key.startswith("env."):
            env_items.append(item[len("env."):])
        elif key in options:
            options[key] = type(options[key])(value)
        else:
            raise SystemExit(f"unknown argument {item!r}: out=, seeds=, scale= or env.KEY=VALUE")
    return options, OmegaConf.to_container(OmegaConf.from_dotlist(env_items))


def main(argv: list[str] | None = None) -> None:
    options, overrides = _parse(sys.argv[1:] if argv is None else argv)
    # Seeds well away from 0..N that tests and training start from, so the sheet is not a cherry-picked one.
    sheet = contact_sheet(list(range(1000, 1000 + options["seeds"])), overrides, options["scale"])
    cv2.imwrite(options["out"], cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {options['out']}: {sheet.shape[1]}x{sheet.shape[0]}, nominal column then {options['seeds']} seeds")


if __name__ == "__main__":
    main()
