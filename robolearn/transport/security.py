"""ZeroMQ CURVE for remote runs: key generation and socket set-up.

    python -m robolearn.transport.keys KEYS_DIR [--clients actor learner]

writes a server keypair and one keypair per client name. Layout of KEYS_DIR:

    server.key, server.key_secret         the server's keypair (server.key_secret stays on the server)
    <client>.key, <client>.key_secret     a client's keypair (copy to that client with server.key)
    authorized/<client>.key               public keys the server accepts; delete one to revoke it (a running
                                          server notices within a second and closes that key's connections)
    authorized/roles.json                 what each key may be: {"<client>": {"role": "actor", "names": ["arm-*"]}}

The server authenticates clients with ZAP (pyzmq's ThreadAuthenticator) against `authorized/`: a peer
without an authorized key, or without the server's public key, never completes the handshake, so it can
neither send nor receive anything. An authenticated connection carries its key's client name (ZeroMQ's
User-Id), and `roles.json` binds that name to one role and, for actors, to the actor names (glob patterns)
it may say hello under: the learner's key cannot act, an actor's key can neither publish weights nor use
another arm's name. A key with no entry in roles.json is refused.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


class CurveKeyError(RuntimeError):
    """Missing or unusable CURVE key files."""


ROLES_FILE = "roles.json"


def default_role(client: str) -> dict:
    """A client named learner* is the learner; any other is an actor that may use any name (restrict with names)."""
    return {"role": "learner"} if client.startswith("learner") else {"role": "actor", "names": ["*"]}


def generate_keys(directory: str | Path, clients: list[str], names: dict[str, list[str]] | None = None) -> Path:
    """Keypairs for the server and each client; `names` restricts an actor client to those name patterns."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    authorized = directory / "authorized"
    authorized.mkdir(exist_ok=True)
    umask = os.umask(0o077)  # secret keys are never readable by others, not even for a moment
    try:
        if not (directory / "server.key_secret").exists():
            zmq.auth.create_certificates(directory, "server")
        for name in clients:
            if not (directory / f"{name}.key_secret").exists():
                zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(umask)
    for name in clients:
        shutil.copy(directory / f"{name}.key", authorized / f"{name}.key")
    roles_path = authorized / ROLES_FILE
    roles = json.loads(roles_path.read_text()) if roles_path.exists() else {}
    for name in clients:
        roles[name] = default_role(name)
        if names and name in names and roles[name]["role"] == "actor":
            roles[name]["names"] = list(names[name])
    tmp = roles_path.with_suffix(".tmp")  # a running server reads it: never half written
    tmp.write_text(json.dumps(roles, indent=2) + "\n")
    os.replace(tmp, roles_path)
    for secret in directory.glob("*.key_secret"):
        secret.chmod(0o600)
    return directory


def revoke_key(directory: str | Path, client: str) -> bool:
    """Take a client's access away: its public key leaves `authorized/` and its entry leaves roles.json. A
    running server notices within a second and closes that key's connections. False if it had no access."""
    authorized = Path(directory) / "authorized"
    key = authorized / f"{client}.key"
    roles_path = authorized / ROLES_FILE
    roles = load_roles(roles_path) if roles_path.exists() else {}
    had = key.exists() or client in roles
    key.unlink(missing_ok=True)
    if roles.pop(client, None) is not None:
        tmp = roles_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(roles, indent=2) + "\n")
        os.replace(tmp, roles_path)
    return had


def _load(path: Path, secret: bool):
    if not path.is_file():
        raise CurveKeyError(f"CURVE key file {path} does not exist (generate keys with `python -m robolearn.transport.keys DIR`)")
    public, private = zmq.auth.load_certificate(path)
    if secret and private is None:
        raise CurveKeyError(f"CURVE key file {path} holds no secret key")
    return public, private


def load_roles(path: Path) -> dict[str, dict]:
    """roles.json, checked: each entry a role (actor or learner) and, for actors, a list of name patterns."""
    if not path.is_file():
        raise CurveKeyError(f"{path} does not exist: it says which role each key has (regenerate the keys, or write it: docs/remote.md)")
    try:
        roles = json.loads(path.read_text())
    except ValueError as exc:
        raise CurveKeyError(f"{path} is not JSON: {exc}") from None
    if not isinstance(roles, dict):
        raise CurveKeyError(f"{path} must map client names to roles")
    for client, entry in roles.items():
        ok = isinstance(entry, dict) and entry.get("role") in ("actor", "learner")
        if ok and entry["role"] == "actor":
            ok = isinstance(entry.get("names"), list) and all(isinstance(n, str) for n in entry["names"])
        if not ok:
            raise CurveKeyError(f"{path}: entry {client!r} must be {{'role': 'learner'}} or {{'role': 'actor', 'names': [patterns]}}, got {entry!r}")
    return roles


def role_allows(roles: dict[str, dict], client: str | None, role: str, name: str) -> bool:
    entry = roles.get(client) if client else None
    if entry is None or entry["role"] != role:
        return False
    return role == "learner" or any(fnmatch.fnmatchcase(name, pattern) for pattern in entry["names"])


def client_keys(authorized: Path) -> dict[bytes, str]:
    """Public key (z85) -> client name, for every `authorized/<client>.key`."""
    clients = {}
    for path in sorted(authorized.glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        clients[public] = path.stem
    return clients


def _fingerprint(authorized: Path) -> tuple:
    """What changes when a key file or roles.json is added, removed or edited."""
    entries = []
    for path in sorted([*authorized.glob("*.key"), authorized / ROLES_FILE]):
        try:
            st = path.stat()
            entries.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            pass
    return tuple(entries)


class _NamedKeys(ThreadAuthenticator):
    """ZAP that names each authenticated connection by its key file (`authorized/<client>.key` -> client)."""

    def __init__(self, context, authorized: Path):
        super().__init__(context, log=logging.getLogger("robolearn.transport.zap"))
        self.clients = client_keys(authorized)

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.clients.get(zmq.utils.z85.encode(client_public_key), "")


class ServerSecurity:
    """Starts ZAP authentication on a context and makes server sockets CURVE servers."""

    def __init__(self, context: zmq.Context, keys_dir: str | Path):
        self.keys_dir = Path(keys_dir)
        self.public, self.secret = _load(self.keys_dir / "server.key_secret", secret=True)
        authorized = self.keys_dir / "authorized"
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise CurveKeyError(f"no authorized client keys in {authorized}")
        self.authorized = authorized
        self.roles_path = authorized / ROLES_FILE
        self._seen = _fingerprint(authorized)
        self.roles = load_roles(self.roles_path)
        self.auth = _NamedKeys(context, authorized)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(authorized))

    def reload(self) -> set[str] | None:
        """Read `authorized/` again if it changed since the last look: None if it did not; otherwise the
        client names whose access was taken away or changed (key deleted or replaced, role entry removed
        or edited), whose live connections must be closed. New handshakes use the new keys at once. A
        roles.json that does not load raises CurveKeyError and changes nothing."""
        seen = _fingerprint(self.authorized)
        if seen == self._seen:
            return None
        roles = load_roles(self.roles_path)
        clients = client_keys(self.authorized)
        before = {name: (public, self.roles.get(name)) for public, name in self.auth.clients.items()}
        after = {name: (public, roles.get(name)) for public, name in clients.items()}
        self.roles, self.auth.clients, self._seen = roles, clients, seen
        self.auth.configure_curve(domain="*", location=str(self.authorized))
        return {name for name, entry in before.items() if after.get(name) != entry}

    @staticmethod
    def user_of(frame) -> str | None:
        """The client name of the key that sent this frame (received with copy=False)."""
        try:
            return frame.get("User-Id") or None
        except (AttributeError, zmq.ZMQError):
            return None

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def apply_client_keys(socket: zmq.Socket, keys_dir: str | Path, client: str) -> None:
    keys_dir = Path(keys_dir)
    public, secret = _load(keys_dir / f"{client}.key_secret", secret=True)
    server_public, _ = _load(keys_dir / "server.key", secret=False)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
