from django.urls import path, re_path

from careline.integrations.fhir import views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    re_path(r"^(?P<resource_type>[A-Za-z]+)/?$", views.type_endpoint, name="type"),
    re_path(
        r"^(?P<resource_type>[A-Za-z]+)/(?P<resource_id>[^/]+)/?$",
        views.instance_endpoint,
        name="instance",
    ),
    re_path(
        r"^(?P<resource_type>[A-Za-z]+)/(?P<resource_id>[^/]+)/_history/?$",
        views.history_endpoint,
        name="history",
    ),
    re_path(
        r"^(?P<resource_type>[A-Za-z]+)/(?P<resource_id>[^/]+)/_history/(?P<version_id>[^/]+)/?$",
        views.vread_endpoint,
        name="vread",
    ),
    re_path(r"^(?P<rest>.*)$", views.unknown_endpoint),
]
