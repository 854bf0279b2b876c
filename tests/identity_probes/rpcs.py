"""RPC functions behind each access rule; each writes a ProbeRun row when it runs."""

from django_zrpc import current_call, rpc
from tests.identity_probes.models import ProbeRun


def _ran(tag: str) -> dict:
    call = current_call()
    user = call.user
    ProbeRun.objects.create(
        function=call.function, tag=tag, user_id="" if call.user_id is None else call.user_id
    )
    return {
        "user_id": call.user_id,
        "username": user.get_username() if user.is_authenticated else None,
    }


@rpc.register()
def identity_open(tag):
    """Run for anyone, anonymous or not; say who called."""
    return _ran(tag)


@rpc.register(login_required=True)
def identity_login(tag):
    """Run for a logged-in, active user only."""
    return _ran(tag)


@rpc.register(permission_required="identity_probes.run_probe")
def identity_perm(tag):
    """Run for a user with identity_probes.run_probe (their own or their group's)."""
    return _ran(tag)


def _named_ok(call) -> bool:
    return call.user.is_authenticated and call.user.get_username().startswith("ok_")


@rpc.register(allow=_named_ok)
def identity_allow(tag):
    """Run for users whose name starts with ok_."""
    return _ran(tag)


@rpc.register()
def report_daily(tag):
    """Run for anyone: a CURVE key limited to report_* may call it."""
    return _ran(tag)
