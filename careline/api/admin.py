from django.contrib import admin

from careline.api.models import ApiKey


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
