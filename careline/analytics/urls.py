from django.urls import path

from careline.analytics import views

app_name = "analytics"
urlpatterns = [
    path("analytics/", views.dashboard, name="dashboard"),
    path("analytics/before-after/", views.before_after, name="before_after"),
]
