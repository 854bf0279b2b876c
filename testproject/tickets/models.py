from django.db import models
from django.utils import timezone


class Ticket(models.Model):
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    def as_dict(self) -> dict:
        """Return the ticket's fields: a django_zrpc caller gets a Decimal and a datetime back,
        a plain zerorpc caller their text."""
        return {
            "id": self.pk,
            "title": self.title,
            "price": self.price,
            "created_at": self.created_at,
        }
