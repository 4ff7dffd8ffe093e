from django.urls import path

from careline.web import simulator

urlpatterns = [
    path("", simulator.phones, name="simulator"),
    path("reply", simulator.reply, name="simulator-reply"),
    path("call/<str:token>/answer", simulator.answer, name="simulator-answer"),
    path("call/<str:token>/key", simulator.press, name="simulator-key"),
]
