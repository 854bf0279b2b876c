"""The uvicorn row's ceiling: ``benchmarks.web_asgi``'s paths and answers, made in the view.

Served as ``benchmarks.web_asgi`` is (uvicorn, one process), async views with
no RPC: the row says what uvicorn and Django's ASGI handler cost alone. On
2026-11-29 it served no more requests a second than the row whose views call
AsyncRPCClient: Django's handler (a thread made per request by asgiref's
ThreadSensitiveContext, and the hops to it for the request signals), not the
client, bounds that row.
"""

from django.http import JsonResponse
from django.urls import path

from benchmarks.common import PAYLOAD


async def echo(request):
    return JsonResponse({"value": 1})


async def payload(request):
    return JsonResponse({"value": PAYLOAD})


urlpatterns = [path("bench/echo/", echo), path("bench/payload/", payload)]
