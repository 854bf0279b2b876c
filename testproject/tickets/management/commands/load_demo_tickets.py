from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from testproject.tickets.models import Ticket


class Command(BaseCommand):
    help = "Create demo tickets (by default 1,000), replacing any that exist."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=1000)

    def handle(self, *args, count, **options):
        if count < 0:
            raise CommandError(f"--count must be 0 or more, not {count}.")
        Ticket.objects.all().delete()
        Ticket.objects.bulk_create(
            (
                Ticket(title=f"Ticket {i}", price=Decimal(i % 500) + Decimal("0.99"))
                for i in range(1, count + 1)
            ),
            batch_size=1000,
        )
        self.stdout.write(f"Created {count} demo tickets.")
