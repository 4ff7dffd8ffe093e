"""Managers' settings pages under /settings/. The namespace keeps its first name,
messaging_settings, because staff pages and bookmarks-by-name already reverse it."""

from django.urls import path

from careline.web import settings_views as views

app_name = "messaging_settings"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("templates/new/", views.edit_template, name="new_template"),
    path("templates/<int:template_id>/", views.edit_template, name="template"),
    path("cadence/<int:organization_id>/", views.edit_cadence, name="cadence"),
    path("practices/<int:practice_id>/", views.edit_practice, name="practice"),
    path(
        "practices/<int:practice_id>/cadence/",
        views.edit_practice_cadence,
        name="practice_cadence",
    ),
    path("practices/<int:practice_id>/hours/", views.office_hours, name="office_hours"),
    path("canned-replies/", views.canned_replies, name="canned_replies"),
    path("canned-replies/<int:canned_reply_id>/", views.canned_replies, name="canned_reply"),
    path(
        "canned-replies/<int:canned_reply_id>/delete/",
        views.remove_canned_reply,
        name="delete_canned_reply",
    ),
    path(
        "response-times/<int:organization_id>/",
        views.edit_response_limits,
        name="response_limits",
    ),
    path(
        "practices/<int:practice_id>/response-times/",
        views.edit_practice_response_limits,
        name="practice_response_limits",
    ),
]
