"""Async views the ASGI tests call: what a view's RPC call carries, and a slow call."""

from django.http import JsonResponse

from django_zrpc import async_clients


async def call_context(request):
    """Return the context the RPC server saw for a call made by this view."""
    return JsonResponse(await async_clients["default"].call_context())


async def sleep(request):
    """Call the RPC server's sleep for ?s= seconds; return what it slept and when it ended."""
    slept = await async_clients["default"].sleep(float(request.GET["s"]))
    return JsonResponse({"slept": slept})
