from django.contrib import admin
from django.utils import timezone

from careline.clinics.admin_scoping import ScopedAdmin, ScopedInline
from careline.waitlist.models import SlotOpening, WaitlistEntry, WaitlistOffer, WaitlistSource


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(ScopedAdmin):
    """Staff add patients who called in; the entry is offered freed times like any other."""

    list_display = ["created_at", "practice", "provider", "earliest_date", "latest_date", "active"]
    list_filter = ["active", "source"]
    raw_id_fields = ["patient", "appointment"]
    fields = [
        "practice",
        "patient",
        "provider",
        "appointment_type",
        "appointment",
        "earliest_date",
        "latest_date",
        "active",
    ]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.organization_id = obj.practice.organization_id
            obj.source = WaitlistSource.STAFF
            obj.created_at = timezone.now()
        elif not obj.active and obj.closed_at is None:
            obj.closed_at, obj.closed_reason = timezone.now(), WaitlistEntry.Closed.STAFF
        super().save_model(request, obj, form, change)


class WaitlistOfferInline(ScopedInline):
    model = WaitlistOffer
    extra = 0
    can_delete = False
    fields = ["batch", "entry", "sent_at", "expires_at", "state", "answered_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SlotOpening)
class SlotOpeningAdmin(ScopedAdmin):
    list_display = ["start", "practice", "provider", "state", "batches_sent", "closed_at"]
    list_filter = ["state"]
    readonly_fields = [f.name for f in SlotOpening._meta.fields]
    inlines = [WaitlistOfferInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
