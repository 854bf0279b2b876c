"""A row each probe writes when it runs: a refused call leaves none."""

from django.db import models


class ProbeRun(models.Model):
    function = models.CharField(max_length=100)
    tag = models.CharField(max_length=100, db_index=True)
    user_id = models.CharField(max_length=100, blank=True)

    class Meta:
        permissions = [("run_probe", "Can run the permission probe")]

    def __str__(self) -> str:
        return f"{self.function} {self.tag}"
