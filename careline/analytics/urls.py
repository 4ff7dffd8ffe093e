from django.urls import path

from careline.analytics import views

app_name = "analytics"
urlpatterns = [
    path("analytics/", views.dashboard, name="dashboard"),
    path("analytics/before-after/", views.before_after, name="before_after"),
    path("analytics/experiments/", views.experiment_list, name="experiments"),
    path("analytics/experiments/<int:experiment_id>/", views.experiment_detail, name="experiment"),
    path("analytics/extra-touch/", views.extra_touch, name="extra-touch"),
    path("analytics/compare/", views.compare, name="compare"),
]
