"""Fuzz a live runrpc server with hypothesis: whatever arrives, it keeps answering."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import raw_dealer

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(scalars, inner, max_size=5),
    max_leaves=30,
)
# Shapes close to an event, with any of its parts wrong.
headers = st.dictionaries(
    st.sampled_from(["message_id", "v", "response_to"]) | st.text(max_size=8), values, max_size=4
)
names = st.sampled_from(["echo", "_zpc_hb", "_zpc_more", "count_up", "fail"]) | st.text(max_size=12)
events = st.tuples(headers, names, values).map(list) | st.lists(values, max_size=5)
frames = (
    events.map(lambda event: [b"", msgpack.packb(event, use_bin_type=True)])
    | st.binary(max_size=200).map(lambda blob: [b"", blob])
    | st.lists(st.binary(max_size=30), min_size=1, max_size=5)
)


@pytest.fixture(scope="module")
def fuzzed_server(start_module_server):
    # One server for every example: that the same process survives them all is the point.
    return start_module_server("--heartbeat", "1", ZRPC_LOG_CALLS="0")


@pytest.fixture(scope="module")
def dealer(fuzzed_server):
    sock = raw_dealer(fuzzed_server.endpoint)
    yield sock
    sock.close()


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
def test_send_2000_generated_frames(dealer, frame):
    dealer.send_multipart(frame)


def test_the_fuzzed_server_still_answers(fuzzed_server, dealer):
    # Runs after the fuzzing above, on the same server process: every frame
    # was dropped or answered, and nothing stopped it.
    with fuzzed_server.client(timeout=10) as client:
        assert client.echo("after the fuzz") == "after the fuzz"
        assert list(client.count_up(3)) == [0, 1, 2]
    assert fuzzed_server.proc.poll() is None
