from django.contrib import admin, messages
from django.http import HttpRequest

from careline.clinics.admin_scoping import ScopedAdmin, ScopedInline
from careline.integrations.feeds import save_feed
from careline.integrations.hl7.receiving import replay_message
from careline.integrations.hl7.writeback.queue import send_again
from careline.integrations.models import (
    ApiKey,
    Hl7Feed,
    Hl7Message,
    Hl7MessageState,
    Hl7OutboundMessage,
    Hl7ProviderLink,
)


class InterfaceAdmin(ScopedAdmin):
    """Feeds and raw messages span every practice of an organization: admins only."""


class ProviderLinkInline(ScopedInline):
    model = Hl7ProviderLink
    extra = 0
    raw_id_fields = ["provider"]


@admin.register(Hl7Feed)
class Hl7FeedAdmin(InterfaceAdmin):
    list_display = [
        "name",
        "organization",
        "sending_application",
        "time_zone",
        "processing_id",
        "identifier_system",
        "active",
    ]
    inlines = [ProviderLinkInline]

    def save_model(self, request: HttpRequest, obj: Hl7Feed, form, change: bool) -> None:
        save_feed(obj)


@admin.register(Hl7Message)
class Hl7MessageAdmin(InterfaceAdmin):
    list_display = [
        "received_at",
        "feed",
        "message_type",
        "trigger_event",
        "control_id",
        "state",
        "ack_code",
        "error",
        "replay_count",
    ]
    list_filter = ["state", "ack_code", "trigger_event", "feed"]
    search_fields = ["control_id"]
    list_select_related = ["feed"]
    show_full_result_count = False
    readonly_fields = [f.name for f in Hl7Message._meta.fields]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay selected messages (after fixing the feed mapping)")
    def replay(self, request: HttpRequest, queryset) -> None:
        counts: dict[str, int] = {}
        skipped = 0
        for message in queryset.select_related("feed__organization").order_by("received_at", "id"):
            if message.feed_id is None or message.state == Hl7MessageState.APPLIED:
                skipped += 1
                continue
            receipt = replay_message(message)
            counts[receipt.ack_code] = counts.get(receipt.ack_code, 0) + 1
        summary = ", ".join(f"{n} {code}" for code, n in sorted(counts.items())) or "none"
        level = messages.SUCCESS if set(counts) <= {"AA"} else messages.WARNING
        self.message_user(
            request,
            f"Replayed: {summary}."
            + (f" Skipped {skipped} already applied or unrouted." if skipped else ""),
            level,
        )


@admin.register(Hl7OutboundMessage)
class Hl7OutboundMessageAdmin(InterfaceAdmin):
    """Write-back to the EHR: what was sent, what is waiting and why."""

    list_display = ["created_at", "feed", "message_type", "stream", "state", "attempts", "ack_code"]
    list_filter = ["state", "message_type"]
    readonly_fields = [f.name for f in Hl7OutboundMessage._meta.fields]
    actions = ["retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Send again (failed messages only)")
    def retry(self, request: HttpRequest, queryset) -> None:
        count = send_again(queryset)
        self.message_user(request, f"{count} message(s) will be sent again.", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    # Keys are issued from the console so the secret is shown once and never stored;
    # here a superuser can see them and revoke one by setting its revoked time.
    list_display = ["name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["organization", "name", "prefix", "created_at", "last_used_at"]
    exclude = ["secret_hash"]

    def has_add_permission(self, request):
        return False

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
