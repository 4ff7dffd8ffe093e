from django.urls import path

from careline.scheduling import desk_views, views

app_name = "scheduling"
urlpatterns = [
    path("schedule/", views.day_view, name="day"),
    path("schedule/<int:practice_id>/call-list/", views.call_list_view, name="call_list"),
    path("schedule/<int:practice_id>/<str:day>/", views.day_view, name="day"),
    path("schedule/<int:practice_id>/<str:day>/calls/", desk_views.day_calls, name="day_calls"),
    path("appointments/<int:appointment_id>/status/", views.set_status, name="set_status"),
    path("appointments/<int:appointment_id>/desk/", desk_views.desk_action, name="desk_action"),
    path("appointments/<int:appointment_id>/undo/", desk_views.desk_undo, name="desk_undo"),
    path("appointments/<int:appointment_id>/move/", desk_views.slot_picker, name="slot_picker"),
]
