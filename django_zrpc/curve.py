"""CURVE: key files, the folder of admitted client keys, and the ZAP handler that admits them.

Keys are files in pyzmq's certificate format (``zmq.auth``), written by
``manage.py rpckeys DIR NAME``: ``NAME.key`` holds the public key and may be
copied anywhere; ``NAME.key_secret`` holds both keys and stays with its owner.

A server with CURVE admits a client only if the client's public key is in one
of the ``*.key`` files of its allow-list folder; the file's name (without
``.key``) is the key's name, which reaches the RPC function as
``current_call().client_key``. libzmq asks a ZAP handler (RFC 27) bound in the
server's own ZeroMQ context; without one it admits every key, so a server
never runs CURVE without the handler and a usable allow-list.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from django_zrpc.core.io import SocketLoop
from django_zrpc.core.ratelimit import RateLimitedLog
from django_zrpc.exceptions import ZRPCConfigurationError

logger = logging.getLogger("django_zrpc.server")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "django_zrpc"

FAILED_EVENTS = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL),
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL),
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH),
}
_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_monitor_ids = itertools.count()


class CurveKeyError(ZRPCConfigurationError, ValueError):
    """A CURVE key file or allow-list folder cannot be used; the message says why."""


# -- key files ---------------------------------------------------------------


def write_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, 0644) and ``NAME.key_secret`` (secret, 0600) in ``directory``."""
    folder = Path(directory)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise CurveKeyError(f"{path} exists; remove it first or pick another name.")
    # The secret file is never readable by others, not even for a moment.
    umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(umask)
    public.chmod(0o644)
    secret.chmod(0o600)
    return public, secret


def load_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """Return (public, secret) Z85 keys from a ``.key_secret`` file."""
    public, secret = _load(path)
    if secret is None:
        raise CurveKeyError(
            f"{path} holds no secret key: give the NAME.key_secret file, not NAME.key."
        )
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """Return the public Z85 key of a ``.key`` (or ``.key_secret``) file."""
    return _load(path)[0]


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as err:
        raise CurveKeyError(f"Cannot read the CURVE key file {path}: {err}.") from err
    except ValueError as err:
        raise CurveKeyError(
            f"{path} is not a CURVE key file in pyzmq's certificate format "
            f"(write one with `manage.py rpckeys`): {err}."
        ) from err
    for key in (public, secret):
        if key is not None and not _is_z85_key(key):
            raise CurveKeyError(f"{path} holds a malformed key: not 40 characters of Z85.")
    return public, secret


def _is_z85_key(key: bytes) -> bool:
    if len(key) != 40:
        return False
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        return False
    return True


# -- the allow-list ------------------------------------------------------------


class AllowList:
    """The ``*.key`` files of a folder: the public keys a server admits, by name.

    Read again whenever a file is added, removed or changed, so a client can be
    admitted or revoked without restarting the server.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._stamp: Any = None
        self._keys: dict[bytes, str] = {}

    def check(self) -> int:
        """Return how many keys the folder holds; raise ``CurveKeyError`` if none can be used."""
        if not self.directory.is_dir():
            raise CurveKeyError(
                f"The CURVE allow-list folder {self.directory} does not exist: create it "
                "and copy each client's NAME.key into it."
            )
        keys, errors = self._read()
        if errors:
            raise CurveKeyError(" ".join(errors))
        if not keys:
            raise CurveKeyError(
                f"The CURVE allow-list folder {self.directory} holds no *.key file: "
                "no client could call. Copy each client's NAME.key into it."
            )
        return len(keys)

    def name_of(self, key: bytes) -> str | None:
        """Return the name of the raw 32-byte public ``key``, or None if it is not admitted."""
        try:
            stamp = self._stat()
        except OSError:
            return None  # the folder went away: admit no one
        if stamp != self._stamp:
            keys, errors = self._read()
            for error in errors:
                logger.warning("CURVE allow-list: %s The file is ignored.", error)
            self._keys, self._stamp = keys, stamp
        return self._keys.get(key)

    def _stat(self) -> tuple[tuple[str, int, int, int, int], ...]:
        stamps = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith(".key") and entry.is_file():
                    # A key replaced by a copy that kept its mtime has another
                    # inode or ctime.
                    info = entry.stat()
                    stamps.append(
                        (entry.name, info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
                    )
        return tuple(sorted(stamps))

    def _read(self) -> tuple[dict[bytes, str], list[str]]:
        keys: dict[bytes, str] = {}
        errors = []
        for path in sorted(self.directory.glob("*.key")):
            try:
                keys[z85.decode(load_public_key(path))] = path.stem
            except CurveKeyError as err:
                errors.append(str(err))
        return keys, errors


# -- what each side holds -------------------------------------------------------


@dataclass(frozen=True)
class ServerKeys:
    """A server's keypair and the folder of the client keys it admits."""

    public: bytes
    secret: bytes
    allow: AllowList

    @classmethod
    def from_files(
        cls, secret_file: str | os.PathLike[str], allow_dir: str | os.PathLike[str]
    ) -> ServerKeys:
        """Load and check both; raise ``CurveKeyError`` saying what cannot be used."""
        public, secret = load_secret_key(secret_file)
        allow = AllowList(allow_dir)
        allow.check()
        return cls(public, secret, allow)

    def apply(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        socket.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        # Refuse every client, rather than admit every key, if the ZAP handler
        # is ever missing (libzmq's default admits them).
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


@dataclass(frozen=True)
class ClientKeys:
    """A client's keypair and the public key of the server it expects."""

    public: bytes
    secret: bytes
    server: bytes

    @classmethod
    def from_files(
        cls, secret_file: str | os.PathLike[str], server_file: str | os.PathLike[str]
    ) -> ClientKeys:
        public, secret = load_secret_key(secret_file)
        return cls(public, secret, load_public_key(server_file))

    def apply(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVERKEY, self.server)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


# -- the ZAP handler -----------------------------------------------------------


class Authenticator:
    """Answer libzmq's ZAP requests for the sockets of ``context``, on gevent.

    Bound to ``inproc://zeromq.zap.01`` in the server's own context, before
    the server binds; its greenlet runs beside the server's.
    """

    def __init__(self, context: zmq.Context, allow: AllowList) -> None:
        self.allow = allow
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        self._io = SocketLoop(self.socket, self._on_request)
        self._refusals = RateLimitedLog(logger, "Refused %d CURVE client(s); latest: %s")

    def run(self) -> None:
        self._io.run()

    def close(self) -> None:
        self._io.stop_watching()
        self.socket.close(linger=0)

    def _on_request(self, frames: list[bytes]) -> None:
        # [routing id, b"", version, request id, domain, address, identity,
        #  mechanism, credentials...]
        if len(frames) < 8 or frames[1] != b"":
            return  # libzmq never sends this
        routing, _, version, request_id, _domain, address, _identity, mechanism = frames[:8]
        credentials = frames[8:]
        name = None
        if version != b"1.0":
            status, text = b"500", b"Unsupported ZAP version"
        elif mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            status, text = b"400", b"CURVE is required"
            self._refusals.record(f"a {mechanism.decode(errors='replace')} client from {address!r}")
        else:
            name = self.allow.name_of(credentials[0])
            if name is None:
                status, text = b"400", b"Unknown key"
                self._refusals.record(
                    f"key {z85.encode(credentials[0]).decode()} from "
                    f"{address.decode(errors='replace')}: not in {self.allow.directory}"
                )
            else:
                status, text = b"200", b"OK"
        user_id = name.encode() if name is not None else b""
        self._io.send([routing, b"", b"1.0", request_id, status, text, user_id, b""])


# -- handshake events ----------------------------------------------------------


class HandshakeMonitor:
    """The handshake events of one socket, read without blocking.

    A client uses it to fail calls at once when the server refuses it, rather
    than after its timeout; a server, to log clients that fail the handshake
    before any key is known (no CURVE, or another server's key).
    """

    def __init__(self, socket: zmq.Socket, side: str) -> None:
        self._socket = socket
        self._side = side
        address = f"inproc://django_zrpc.monitor.{os.getpid()}.{next(_monitor_ids)}"
        socket.monitor(address, _SUCCEEDED | sum(FAILED_EVENTS))
        self.pair = socket.context.socket(zmq.PAIR)
        self.pair.setsockopt(zmq.LINGER, 0)
        self.pair.connect(address)
        self.failure: str | None = None

    def read(self) -> str | None:
        """Read the events so far; return the last failure unless a handshake succeeded since."""
        while True:
            try:
                frames = self.pair.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return self.failure
            self.on_frames(frames)

    def on_frames(self, frames: list[bytes]) -> None:
        event, value = parse_event(frames)
        if event == _SUCCEEDED:
            self.failure = None
        elif event in FAILED_EVENTS:
            self.failure = describe_failure(event, value, self._side)

    def close(self) -> None:
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is closed already
        self.pair.close(linger=0)


def parse_event(frames: list[bytes]) -> tuple[int, int]:
    """Return (event, value) of a monitor message; (0, 0) for one too short."""
    if len(frames) < 1 or len(frames[0]) < 6:
        return 0, 0
    return int.from_bytes(frames[0][:2], "little"), int.from_bytes(frames[0][2:6], "little")


#: Who watches a socket, for describe_failure().
SERVER, CURVE_CLIENT, PLAIN_CLIENT = "server", "CURVE client", "plain client"


def describe_failure(event: int, value: int, side: str) -> str:
    """Say in words why a handshake failed, as seen from ``side``."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"the server refused this client's CURVE key (ZAP status {value}): its "
            "NAME.key must be in the server's allow-list folder"
        )
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if side == SERVER:
            return "a client without CURVE keys connected"
        if side == PLAIN_CLIENT:
            return (
                "this client has no CURVE keys and the server requires CURVE: give this "
                "client curve_secret and curve_server"
            )
        return "this client has CURVE keys and the server has CURVE off"
    if side == PLAIN_CLIENT:
        return (
            f"the server closed the connection during the handshake ({_reason(event, value)}): "
            "it may require CURVE (give this client curve_secret and curve_server), or "
            "the endpoint is not a ZeroMQ server"
        )
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and side == SERVER:
        return "a client's server key is not this server's public key"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and side == SERVER:
        return f"a ZMTP protocol error ({value:#x})"
    return (
        f"the server closed the connection during the handshake ({_reason(event, value)}): "
        "is curve_server the public key of the server at this endpoint?"
    )


def _reason(event: int, value: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"ZMTP protocol error {value:#x}"
    return os.strerror(value)
