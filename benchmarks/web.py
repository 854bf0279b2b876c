"""Views for the benchmark's HTTP row: a Django view calling RPCClient.

Served by gunicorn with gevent workers under ``benchmarks.settings``, whose
ROOT_URLCONF this module is. ``/tickets/<id>/`` is the test project's own
view; ``/bench/echo/`` and ``/bench/payload/`` call ``echo`` with a small int
and with the 10 KB string, and answer its result as JSON.
"""

from django.http import JsonResponse
from django.urls import include, path

from benchmarks.common import PAYLOAD
from django_zrpc import clients


def echo(request):
    return JsonResponse({"value": clients["default"].echo(1)})


def payload(request):
    return JsonResponse({"value": clients["default"].echo(PAYLOAD)})


urlpatterns = [
    path("bench/echo/", echo),
    path("bench/payload/", payload),
    path("", include("testproject.urls")),
]
