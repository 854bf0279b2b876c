"""Views that call the RPC server through the pooled clients, sync and async.

They show what a Django project on the web side of a split does: borrow the
named client, turn remote errors into HTTP answers, and stream a remote stream.
The async views do the same under an ASGI server (uvicorn, daphne), with
``async_clients``: no thread, no gevent.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, JsonResponse, StreamingHttpResponse

from django_zrpc import async_clients, clients
from django_zrpc.exceptions import LostRemote, TimeoutExpired
from testproject.tickets.errors import SoldOut  # noqa: F401 (registers it for callers)
from testproject.tickets.models import Ticket


def ticket_detail(request, id):
    """Return the JSON of one ticket, read by the RPC server; 404 if it has none."""
    try:
        ticket = clients["default"].get_ticket(id=id)
    except Ticket.DoesNotExist as err:  # raised by the RPC server, raised here as the same class
        raise Http404(f"No ticket {id}.") from err
    except (TimeoutExpired, LostRemote) as err:
        return JsonResponse({"error": f"The ticket service did not answer: {err}"}, status=503)
    return JsonResponse(ticket)


def ticket_list(request):
    """Stream ?n= tickets as JSON lines, as the RPC server streams them."""
    try:
        n = int(request.GET.get("n", "100"))
    except ValueError:
        return JsonResponse({"error": "n must be an integer."}, status=400)
    tickets = clients["default"].ticket_list(n)
    return StreamingHttpResponse(
        (json.dumps(ticket, cls=DjangoJSONEncoder) + "\n" for ticket in tickets),
        content_type="application/x-ndjson",
    )


async def ticket_detail_async(request, id):
    """``ticket_detail`` as an async view: the same answers, awaited on the event loop."""
    try:
        ticket = await async_clients["default"].get_ticket(id=id)
    except Ticket.DoesNotExist as err:
        raise Http404(f"No ticket {id}.") from err
    except (TimeoutExpired, LostRemote) as err:
        return JsonResponse({"error": f"The ticket service did not answer: {err}"}, status=503)
    return JsonResponse(ticket)


async def ticket_list_async(request):
    """``ticket_list`` as an async view: the remote stream read with ``async for``."""
    try:
        n = int(request.GET.get("n", "100"))
    except ValueError:
        return JsonResponse({"error": "n must be an integer."}, status=400)
    tickets = await async_clients["default"].ticket_list(n)

    async def lines():
        # Leaving early (the HTTP client went away) drops the stream, and the
        # RPC server stops reading tickets.
        async for ticket in tickets:
            yield json.dumps(ticket, cls=DjangoJSONEncoder) + "\n"

    return StreamingHttpResponse(lines(), content_type="application/x-ndjson")
