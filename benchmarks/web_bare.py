"""The gunicorn row's ceiling: ``benchmarks.web``'s paths and answers, made in the view.

Served as ``benchmarks.web`` is (gunicorn, one gevent worker), with no RPC:
the row says what gunicorn and Django's WSGI handler cost alone, so that the
RPC row beside it shows what the call adds. ``benchmarks.web_bare_async`` is
the uvicorn row's.
"""

from django.http import JsonResponse
from django.urls import path

from benchmarks.common import PAYLOAD


def echo(request):
    return JsonResponse({"value": 1})


def payload(request):
    return JsonResponse({"value": PAYLOAD})


urlpatterns = [path("bench/echo/", echo), path("bench/payload/", payload)]
