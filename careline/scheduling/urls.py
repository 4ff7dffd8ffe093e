from django.urls import path

from careline.scheduling import views

app_name = "scheduling"
urlpatterns = [
    path("schedule/", views.day_view, name="day"),
    path("schedule/<int:practice_id>/call-list/", views.call_list_view, name="call_list"),
    path("schedule/<int:practice_id>/<str:day>/", views.day_view, name="day"),
    path("appointments/<int:appointment_id>/status/", views.set_status, name="set_status"),
]
