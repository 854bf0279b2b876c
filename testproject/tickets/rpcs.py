"""The demo app's RPC functions."""

from django_zrpc import rpc
from testproject.tickets.errors import SoldOut
from testproject.tickets.models import Ticket


@rpc.register()
def get_ticket(id):
    """Return one ticket by id."""
    return Ticket.objects.get(pk=id).as_dict()


@rpc.register(name="ticket_list", stream=True)
def ticket_list(n=100):
    """Stream the first n tickets, reading them lazily in chunks."""
    for ticket in Ticket.objects.order_by("id")[:n].iterator(chunk_size=1000):
        yield ticket.as_dict()


@rpc.register()
def fail(message="x"):
    """Raise ValueError(message): shows how callers see a remote error."""
    raise ValueError(message)


@rpc.register()
def reserve(id, seats=1):
    """Reserve seats on a ticket; raise SoldOut past 4 (this demo's house is small)."""
    ticket = Ticket.objects.get(pk=id)
    if seats > 4:
        raise SoldOut(ticket.pk, seats)
    return {"id": ticket.pk, "seats": seats}
