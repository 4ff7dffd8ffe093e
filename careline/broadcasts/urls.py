from django.urls import path

from careline.broadcasts import views

app_name = "broadcasts"
urlpatterns = [
    path("broadcasts/", views.broadcast_list, name="list"),
    path("broadcasts/new/", views.compose, name="compose"),
    path("broadcasts/previews/<int:preview_id>/", views.preview_count, name="preview_count"),
    path("broadcasts/<int:broadcast_id>/", views.detail, name="detail"),
    path("broadcasts/<int:broadcast_id>/cancel/", views.cancel, name="cancel"),
]
