"""python -m robolearn.transport.keys KEYS_DIR [--clients actor learner] [--names arm1=arm1 ...] [--revoke CLIENT]: CURVE keys.

A client named learner* gets the learner's role, any other client an actor's; `--names CLIENT=PATTERN[,PATTERN]`
limits the actor names that client's key may use (default: any). Written to KEYS_DIR/authorized/roles.json.
`--revoke CLIENT` takes a client's access away: a running replay server closes its connections within a second."""

from __future__ import annotations

import argparse

from robolearn.transport.security import generate_keys, revoke_key


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robolearn.transport.keys", description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("--clients", nargs="+", default=["actor", "learner"], help="one keypair per client name")
    parser.add_argument("--names", nargs="*", default=[], metavar="CLIENT=PATTERNS",
                        help="actor names a client's key may use, comma-separated glob patterns (e.g. arm1=arm1,arm1-*)")
    parser.add_argument("--revoke", nargs="+", metavar="CLIENT", help="take these clients' access away (nothing is generated)")
    args = parser.parse_args(argv)
    if args.revoke:
        for client in args.revoke:
            if revoke_key(args.directory, client):
                print(f"revoked {client}: a running replay server using {args.directory} closes its connections within a second")
            else:
                print(f"{client} had no access in {args.directory}/authorized")
        return
    names = {}
    for item in args.names:
        client, sep, patterns = item.partition("=")
        if not sep or client not in args.clients or not patterns:
            parser.error(f"--names {item!r}: expected CLIENT=PATTERN[,PATTERN] for one of the clients {args.clients}")
        names[client] = patterns.split(",")
    out = generate_keys(args.directory, args.clients, names)
    print(f"wrote CURVE keys to {out}:")
    print(f"  server: keep {out}/server.key_secret on the replay-server host")
    for name in args.clients:
        print(f"  {name}: copy {out}/{name}.key_secret and {out}/server.key to the {name} host")
    print(f"  the server accepts the public keys in {out}/authorized/, each in the role {out}/authorized/roles.json gives it")


if __name__ == "__main__":
    main()
