"""Views for the benchmark's ASGI row: async views calling AsyncRPCClient, under uvicorn.

The same paths and answers as ``benchmarks.web`` (whose views call RPCClient
under gunicorn's gevent workers), served by ``benchmarks.settings_asgi``.
"""

from django.http import JsonResponse
from django.urls import path

from benchmarks.common import PAYLOAD
from django_zrpc import async_clients
from testproject.tickets.views import ticket_detail_async


async def echo(request):
    return JsonResponse({"value": await async_clients["default"].echo(1)})


async def payload(request):
    return JsonResponse({"value": await async_clients["default"].echo(PAYLOAD)})


urlpatterns = [
    path("bench/echo/", echo),
    path("bench/payload/", payload),
    path("tickets/<int:id>/", ticket_detail_async),
]
