"""Views of a logged-in user that call the login_required probe: what the server saw."""

from django.http import JsonResponse

from django_zrpc import AsyncRPCClient, RPCClient


def whoami(request):
    with RPCClient(request.GET["endpoint"], timeout=20) as client:
        return JsonResponse(client.identity_login(request.GET["tag"]))


async def awhoami(request):
    client = AsyncRPCClient(request.GET["endpoint"], timeout=20)
    try:
        return JsonResponse(await client.identity_login(request.GET["tag"]))
    finally:
        await client.aclose()
