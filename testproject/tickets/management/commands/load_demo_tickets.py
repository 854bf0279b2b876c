from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.core.management.color import no_style
from django.db import connection

from testproject.tickets.models import Ticket


class Command(BaseCommand):
    help = "Create demo tickets (by default 1,000), replacing any that exist."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=1000)

    def handle(self, *args, count, **options):
        if count < 0:
            raise CommandError(f"--count must be 0 or more, not {count}.")
        Ticket.objects.all().delete()
        # Ids 1..count whatever the sequence said before, so that demo calls
        # such as get_ticket(1) always find their ticket.
        Ticket.objects.bulk_create(
            (
                Ticket(id=i, title=f"Ticket {i}", price=Decimal(i % 500) + Decimal("0.99"))
                for i in range(1, count + 1)
            ),
            batch_size=1000,
        )
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), [Ticket]):
                cursor.execute(sql)
        self.stdout.write(f"Created {count} demo tickets.")
