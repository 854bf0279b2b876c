import pytest

from django_zrpc.exceptions import DuplicateRPCName, InvalidRPCName
from django_zrpc.registry import Registry, rpc
from django_zrpc.server.builtins import argspec


def test_register_uses_the_function_name_and_returns_it_unchanged():
    registry = Registry()

    def get_thing(a, b=2):
        return a + b

    assert registry.register()(get_thing) is get_thing
    assert registry["get_thing"].func is get_thing
    assert registry["get_thing"].stream is False
    assert get_thing(1) == 3


def test_register_with_name_and_stream():
    registry = Registry()

    @registry.register(name="ticket_list", stream=True)
    def tickets(n):
        return range(n)

    assert "ticket_list" in registry
    assert "tickets" not in registry
    assert registry["ticket_list"].stream is True
    assert list(tickets(2)) == [0, 1]


def _make(module: str, name: str = "f"):
    def f():
        return module

    f.__module__ = module
    f.__qualname__ = name
    return f


def test_same_name_from_two_modules_names_both():
    registry = Registry()
    registry.register(name="get_ticket")(_make("tickets.rpcs"))
    with pytest.raises(DuplicateRPCName, match=r"'get_ticket' is registered twice") as caught:
        registry.register(name="get_ticket")(_make("shop.rpcs"))
    assert "tickets.rpcs.f" in str(caught.value)
    assert "shop.rpcs.f" in str(caught.value)


def test_reimporting_a_module_is_not_a_clash():
    registry = Registry()
    registry.register()(_make("tickets.rpcs", "get_ticket"))
    registry.register()(_make("tickets.rpcs", "get_ticket"))  # a new object, same function
    assert len(registry) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        (" padded ", "white space"),
        ("_private", "starts with '_'"),
        ("_zerorpc_list", "starts with '_'"),
        (42, "not a string"),
    ],
)
def test_names_zerorpc_cannot_route_are_refused(name, message):
    registry = Registry()
    with pytest.raises(InvalidRPCName, match=message):
        registry.register(name=name)(lambda: None)
    assert len(registry) == 0


def test_bare_decorator_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"write @rpc.register\(\)"):
        Registry().register(lambda: None)  # type: ignore[arg-type]


def test_positional_flags_are_a_type_error_that_names_them():
    registry = Registry()
    with pytest.raises(TypeError) as caught:
        registry.register("charges", True)
    assert str(caught.value) == (
        "rpc.register takes its flags by keyword: write "
        "@rpc.register('charges', stream=True), not @rpc.register('charges', True)."
    )
    assert "charges" not in registry


def test_autodiscovery_registered_the_test_project_functions():
    names = {entry.name for entry in rpc}
    assert {"get_ticket", "ticket_list", "fail", "echo", "sleep"} <= names
    assert rpc["ticket_list"].stream is True
    assert rpc["get_ticket"].module == "testproject.tickets.rpcs"


def test_argspec_replaces_getargspec():
    def f(a, b=1, *rest, c, **kw):
        pass

    assert argspec(f) == [["a", "b"], "rest", "kw", [1]]
    sentinel = object()
    assert argspec(lambda x=sentinel: x) == [["x"], None, None, [repr(sentinel)]]
    assert argspec(len) == [["obj"], None, None, None]
