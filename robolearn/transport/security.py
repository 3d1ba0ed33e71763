"""ZeroMQ CURVE for remote runs: key generation and socket set-up.

    python -m robolearn.transport.keys KEYS_DIR [--clients actor learner]

writes a server keypair and one keypair per client name. Layout of KEYS_DIR:

    server.key, server.key_secret         the server's keypair (server.key_secret stays on the server)
    <client>.key, <client>.key_secret     a client's keypair (copy to that client with server.key)
    authorized/<client>.key               public keys the server accepts; delete one to revoke it

The server authenticates clients with ZAP (pyzmq's ThreadAuthenticator) against `authorized/`: a peer
without an authorized key, or without the server's public key, never completes the handshake, so it can
neither send nor receive anything.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


class CurveKeyError(RuntimeError):
    """Missing or unusable CURVE key files."""


def generate_keys(directory: str | Path, clients: list[str]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    authorized = directory / "authorized"
    authorized.mkdir(exist_ok=True)
    if not (directory / "server.key_secret").exists():
        zmq.auth.create_certificates(directory, "server")
    for name in clients:
        if not (directory / f"{name}.key_secret").exists():
            zmq.auth.create_certificates(directory, name)
        shutil.copy(directory / f"{name}.key", authorized / f"{name}.key")
    for secret in directory.glob("*.key_secret"):
        secret.chmod(0o600)
    return directory


def _load(path: Path, secret: bool):
    if not path.is_file():
        raise CurveKeyError(f"CURVE key file {path} does not exist (generate keys with `python -m robolearn.transport.keys DIR`)")
    public, private = zmq.auth.load_certificate(path)
    if secret and private is None:
        raise CurveKeyError(f"CURVE key file {path} holds no secret key")
    return public, private


class ServerSecurity:
    """Starts ZAP authentication on a context and makes server sockets CURVE servers."""

    def __init__(self, context: zmq.Context, keys_dir: str | Path):
        self.keys_dir = Path(keys_dir)
        self.public, self.secret = _load(self.keys_dir / "server.key_secret", secret=True)
        authorized = self.keys_dir / "authorized"
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise CurveKeyError(f"no authorized client keys in {authorized}")
        self.auth = ThreadAuthenticator(context, log=logging.getLogger("robolearn.transport.zap"))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(authorized))

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
