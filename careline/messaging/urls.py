from django.urls import path

from careline.messaging import views

urlpatterns = [
    path("", views.phones, name="simulator"),
    path("reply", views.reply, name="simulator-reply"),
]
