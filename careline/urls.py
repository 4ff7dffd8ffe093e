from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Careline administration"
admin.site.site_title = "Careline"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("simulator/", include("careline.messaging.urls")),
    path("webhooks/twilio/", include("careline.messaging.webhook_urls")),
    path("fhir/R4/", include("careline.integrations.fhir.urls")),
    path("api/v1/", include("careline.api.v1.urls")),
    path("", include("careline.selfservice.urls")),
    path("", include("careline.web.urls")),
    path("", include("careline.scheduling.urls")),
    path("", include("careline.web.patient_urls")),
    path("", include("careline.analytics.urls")),
    path("", include("careline.broadcasts.urls")),
    path("", include("careline.conversations.urls")),
    path("settings/", include("careline.messaging.settings_urls")),
]
