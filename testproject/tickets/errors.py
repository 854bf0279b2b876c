"""Exceptions the ticket service raises and its callers catch by class.

Registered on both sides: the RPC server imports this module through
rpcs.py, the web side through views.py.
"""

from django_zrpc import register_error


@register_error
class SoldOut(Exception):
    """No seats are left for a ticket."""

    def __init__(self, ticket_id, wanted):
        super().__init__(ticket_id, wanted)
        self.ticket_id = ticket_id
        self.wanted = wanted

    def __str__(self):
        return f"Ticket {self.ticket_id} has no {self.wanted} seats left."
