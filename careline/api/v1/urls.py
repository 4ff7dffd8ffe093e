from django.urls import path, re_path

from careline.api.v1 import views
from careline.api.v1.http import route, unknown_endpoint

app_name = "api_v1"

urlpatterns = [
    path("openapi.json", route(public=True, GET=views.openapi), name="openapi"),
    path("conversations", route(GET=views.list_conversations), name="conversations"),
    path(
        "conversations/<int:conversation_id>",
        route(GET=views.get_conversation),
        name="conversation",
    ),
    path(
        "conversations/<int:conversation_id>/reply",
        route(POST=views.reply_to_conversation),
        name="conversation-reply",
    ),
    path(
        "conversations/<int:conversation_id>/close",
        route(POST=views.close_conversation),
        name="conversation-close",
    ),
    path(
        "broadcasts",
        route(GET=views.list_broadcasts, POST=views.create_broadcast),
        name="broadcasts",
    ),
    path("broadcasts/<int:broadcast_id>", route(GET=views.get_broadcast), name="broadcast"),
    path(
        "reminder-rules",
        route(GET=views.get_reminder_rules, PUT=views.put_reminder_rules),
        name="reminder-rules",
    ),
    path(
        "response-limits",
        route(GET=views.get_response_limits, PUT=views.put_response_limits),
        name="response-limits",
    ),
    path(
        "appointments/<int:appointment_id>/planned-messages",
        route(GET=views.planned_messages),
        name="planned-messages",
    ),
    path("reports/appointments", route(GET=views.appointment_report), name="report-appointments"),
    path("reports/engagement", route(GET=views.engagement_report), name="report-engagement"),
    path("reports/before-after", route(GET=views.before_after_report), name="report-before-after"),
    path(
        "hl7-feeds",
        route(GET=views.list_hl7_feeds, POST=views.create_hl7_feed),
        name="hl7-feeds",
    ),
    path(
        "hl7-feeds/<int:feed_id>",
        route(GET=views.get_hl7_feed, DELETE=views.delete_hl7_feed),
        name="hl7-feed",
    ),
    path(
        "appointments/<int:appointment_id>",
        route(GET=views.get_appointment),
        name="appointment",
    ),
    path(
        "appointments/<int:appointment_id>/actions",
        route(POST=views.act_on_appointment),
        name="appointment-actions",
    ),
    path(
        "appointments/<int:appointment_id>/undo",
        route(POST=views.undo_appointment_change),
        name="appointment-undo",
    ),
    path(
        "appointments/<int:appointment_id>/open-times",
        route(GET=views.appointment_open_times),
        name="appointment-open-times",
    ),
    path(
        "experiments",
        route(GET=views.list_experiments, POST=views.create_experiment),
        name="experiments",
    ),
    path(
        "experiments/<int:experiment_id>",
        route(GET=views.get_experiment),
        name="experiment",
    ),
    path(
        "experiments/<int:experiment_id>/stop",
        route(POST=views.stop_experiment),
        name="experiment-stop",
    ),
    path(
        "extra-touch",
        route(GET=views.list_extra_touches, POST=views.start_extra_touch),
        name="extra-touches",
    ),
    path("extra-touch/<int:policy_id>", route(GET=views.get_extra_touch), name="extra-touch"),
    path(
        "extra-touch/<int:policy_id>/stop",
        route(POST=views.stop_extra_touch),
        name="extra-touch-stop",
    ),
    # Anything else under /api/v1/ answers in JSON too, not with the HTML 404 page.
    re_path(r"^(?P<rest>.*)$", unknown_endpoint),
]
