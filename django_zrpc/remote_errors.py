"""The error codec's import path before it moved to ``django_zrpc.wire.remote_errors``.

Kept so that code written for earlier releases keeps importing; new code
imports ``register_error`` from ``django_zrpc``.
"""

from django_zrpc.wire.remote_errors import (
    HEADER,
    NEVER_STARTED,
    decode,
    encode,
    expected,
    register_error,
)

__all__ = ["HEADER", "NEVER_STARTED", "decode", "encode", "expected", "register_error"]
