from django.contrib import admin
from django.urls import include, path

from careline.conversations.voice_webhooks import call_answered, call_key_pressed
from careline.conversations.webhooks import incoming_sms
from careline.messaging.webhooks import call_status, status_callback

admin.site.site_header = "Careline administration"
admin.site.site_title = "Careline"

# Twilio calls all of these under one prefix: delivery reports update the outbox
# (messaging), texts patients send and keys pressed on calls go to conversations.
twilio_webhooks = (
    [
        path("status", status_callback, name="status"),
        path("sms", incoming_sms, name="sms"),
        # A reminder call's URLs carry its unguessable token (careline.messaging.calls).
        path("voice/<str:token>", call_answered, name="call"),
        path("voice/<str:token>/gather", call_key_pressed, name="call_gather"),
        path("voice/<str:token>/status", call_status, name="call_status"),
    ],
    "twilio_webhooks",
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("simulator/", include("careline.web.simulator_urls")),
    path("webhooks/twilio/", include(twilio_webhooks)),
    path("fhir/R4/", include("careline.integrations.fhir.urls")),
    path("api/v1/", include("careline.api.v1.urls")),
    path("", include("careline.selfservice.urls")),
    path("", include("careline.web.urls")),
    path("", include("careline.scheduling.urls")),
    path("", include("careline.web.patient_urls")),
    path("", include("careline.analytics.urls")),
    path("", include("careline.broadcasts.urls")),
    path("", include("careline.conversations.urls")),
    path("settings/", include("careline.web.settings_urls")),
]
