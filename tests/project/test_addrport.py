import pytest

from django_zrpc.addrport import AddrPort, parse_addrport


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4242", AddrPort("127.0.0.1", 4242, False)),
        ("127.0.0.1:4242", AddrPort("127.0.0.1", 4242, False)),
        ("0.0.0.0:4242", AddrPort("0.0.0.0", 4242, False)),
        ("[::1]:4242", AddrPort("::1", 4242, True)),
        ("host.example:4242", AddrPort("host.example", 4242, False)),
        ("localhost:1", AddrPort("localhost", 1, False)),
    ],
)
def test_runserver_grammar(value, expected):
    assert parse_addrport(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "abc", "127.0.0.1:", ":4242", "0", "65536", "999.0.0.1:1", "[::1]", "host:port", "-1"],
)
def test_invalid_values_quote_the_value(value):
    with pytest.raises(ValueError, match=r"is not a port number|out of range|not an IPv4"):
        parse_addrport(value)


def test_endpoint():
    assert parse_addrport("[::1]:4242").endpoint == "tcp://[::1]:4242"
    assert parse_addrport("4242").endpoint == "tcp://127.0.0.1:4242"
