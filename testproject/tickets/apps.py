from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "testproject.tickets"
    label = "tickets"
