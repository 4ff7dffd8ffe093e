from django.db import models


class FailedLogin(models.Model):
    """One failed staff sign-in; recent ones slow down password guessing."""

    username = models.CharField(max_length=150, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"failed sign-in {self.occurred_at:%Y-%m-%d %H:%M}"
