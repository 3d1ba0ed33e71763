"""python -m robolearn.transport.keys KEYS_DIR [--clients actor learner]: CURVE keys for remote runs."""

from __future__ import annotations

import argparse

from robolearn.transport.security import generate_keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robolearn.transport.keys", description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("--clients", nargs="+", default=["actor", "learner"], help="one keypair per client name")
    args = parser.parse_args(argv)
    out = generate_keys(args.directory, args.clients)
    print(f"wrote CURVE keys to {out}:")
    print(f"  server: keep {out}/server.key_secret on the replay-server host")
    for name in args.clients:
        print(f"  {name}: copy {out}/{name}.key_secret and {out}/server.key to the {name} host")
    print(f"  the server accepts the public keys in {out}/authorized/")


if __name__ == "__main__":
    main()
