from django.urls import path

from careline.web import simulator

urlpatterns = [
    path("", simulator.phones, name="simulator"),
    path("reply", simulator.reply, name="simulator-reply"),
]
