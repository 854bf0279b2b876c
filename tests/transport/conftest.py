"""What the transport tests share: a plain ZeroMQ ROUTER, which sees exactly what arrives."""

from __future__ import annotations

import pytest
import zmq

from tests.conftest import free_port


@pytest.fixture
def router():
    """A ROUTER bound on 127.0.0.1 (receives time out after 5 s); yields (socket, endpoint)."""
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    port = free_port()
    sock.bind(f"tcp://127.0.0.1:{port}")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    context.term()
