from django.urls import path

from careline.messaging import webhooks

app_name = "twilio_webhooks"

urlpatterns = [
    path("status", webhooks.status_callback, name="status"),
    path("sms", webhooks.incoming_sms, name="sms"),
]
