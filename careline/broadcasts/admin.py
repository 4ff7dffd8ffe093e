from django.contrib import admin

from careline.broadcasts.models import Broadcast
from careline.clinics.admin_scoping import ScopedAdmin


@admin.register(Broadcast)
class BroadcastAdmin(ScopedAdmin):
    list_display = ["name", "send_at", "state", "recipients", "created_by"]
    readonly_fields = ["audience", "excluded", "recipients", "created_by"]
