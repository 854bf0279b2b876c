"""CURVE keys: key files, the folder of admitted client keys, and what each side holds.

Keys are files in pyzmq's certificate format (``zmq.auth``), written by
``manage.py rpckeys DIR NAME``: ``NAME.key`` holds the public key and may be
copied anywhere; ``NAME.key_secret`` holds both keys and stays with its owner.

A server with CURVE admits a client only if the client's public key is in one
of the ``*.key`` files of its allow-list folder; the file's name (without
``.key``) is the key's name, which reaches the RPC function as
``current_call().client_key``. The server's ZAP handler
(``django_zrpc.server.zap``) asks the allow-list about each connecting key;
a server never runs CURVE without the handler and a usable allow-list.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from django_zrpc.exceptions import CurveKeyError

logger = logging.getLogger("django_zrpc.server")

ZAP_DOMAIN = "django_zrpc"


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


# -- both files or neither -------------------------------------------------------


def server_keys(
    secret_file: str | os.PathLike[str] | None, allow_dir: str | os.PathLike[str] | None
) -> ServerKeys | None:
    """Return a server's CURVE keys; None when neither file is given.

    Raises ``CurveKeyError`` when only one of the two is given, or either
    cannot be used: a CURVE server without a usable allow-list would admit
    no one, or (without its ZAP handler) anyone.
    """
    if not secret_file and not allow_dir:
        return None
    if not secret_file or not allow_dir:
        raise CurveKeyError(
            "CURVE needs both the server's secret key file (--curve-secret, "
            "ZRPC_CURVE_SECRET) and the folder of admitted client keys (--curve-allow, "
            "ZRPC_CURVE_ALLOW)."
        )
    return ServerKeys.from_files(secret_file, allow_dir)


def client_keys(
    curve_secret: str | os.PathLike[str] | None, curve_server: str | os.PathLike[str] | None
) -> ClientKeys | None:
    """Return a client's CURVE keys; None when neither file is given.

    Raises ``CurveKeyError`` when only one of the two is given, or either
    cannot be used.
    """
    if curve_secret is None and curve_server is None:
        return None
    if curve_secret is None or curve_server is None:
        raise CurveKeyError(
            "CURVE needs both files: curve_secret (this client's NAME.key_secret) and "
            "curve_server (the server's NAME.key)."
        )
    return ClientKeys.from_files(curve_secret, curve_server)
