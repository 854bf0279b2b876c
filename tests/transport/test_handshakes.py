"""What a client makes of its connection attempts: a server refusing it, or a process that died.

The rule on its own (``transport.monitor.Handshakes``), with the events libzmq's
monitor gives; ``test_curve.py`` and ``test_workers.py`` show it on real
servers: a refused key fails at once, and a worker killed during a
connection's handshake does not make its callers think they are refused.
"""

import errno

import zmq

from django_zrpc.transport.monitor import CURVE_CLIENT, PLAIN_CLIENT, Handshakes

CLOSED = int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
AUTH = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
PROTOCOL = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)


def test_a_connection_closed_once_during_the_handshake_is_not_a_refusal():
    handshakes = Handshakes(PLAIN_CLIENT)
    handshakes.on_event(CLOSED, errno.ECONNRESET)  # a worker killed as it accepted
    assert handshakes.failure is None
    handshakes.on_event(SUCCEEDED, 0)  # the next attempt reached another process
    handshakes.on_event(CLOSED, errno.ECONNRESET)
    assert handshakes.failure is None


def test_a_connection_closed_at_two_attempts_in_a_row_is_a_refusal():
    handshakes = Handshakes(PLAIN_CLIENT)
    handshakes.on_event(CLOSED, errno.ECONNRESET)
    handshakes.on_event(CLOSED, errno.ECONNRESET)
    assert handshakes.failure is not None
    assert "it may require CURVE" in handshakes.failure
    handshakes.on_event(SUCCEEDED, 0)
    assert handshakes.failure is None


def test_a_refused_key_or_a_protocol_error_is_a_refusal_at_once():
    handshakes = Handshakes(CURVE_CLIENT)
    handshakes.on_event(AUTH, 400)
    assert handshakes.failure is not None
    assert "refused this client's CURVE key" in handshakes.failure
    other = Handshakes(CURVE_CLIENT)
    other.on_event(PROTOCOL, int(zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH))
    assert other.failure == "this client has CURVE keys and the server has CURVE off"
