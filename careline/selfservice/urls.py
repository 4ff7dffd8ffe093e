from django.urls import path
from django.views.i18n import set_language

from careline.selfservice import views

app_name = "selfservice"
urlpatterns = [
    path("book/<str:code>/", views.practice_by_code, name="book_short"),
    path("book/<slug:org>/<str:code>/", views.book, name="book"),
    path("book/<slug:org>/<str:code>/choose/", views.choose, name="choose"),
    path("book/<slug:org>/<str:code>/waitlist/", views.join_waitlist, name="waitlist"),
    path("book/<slug:org>/<str:code>/details/", views.details, name="details"),
    path("book/<slug:org>/<str:code>/verify/", views.verify, name="verify"),
    path("book/<slug:org>/<str:code>/done/", views.done, name="done"),
    path("book/<slug:org>/<str:code>/done/visit.ics", views.done_calendar, name="done_calendar"),
    path("a/<str:token>", views.link_page, name="link"),
    path("a/<str:token>/confirm", views.link_confirm, name="link_confirm"),
    path("a/<str:token>/cancel", views.link_cancel, name="link_cancel"),
    path("a/<str:token>/move", views.link_reschedule, name="link_reschedule"),
    path("a/<str:token>/visit.ics", views.link_calendar, name="link_calendar"),
    path("a/<str:token>/details", views.link_details, name="link_details"),
    path("a/<str:token>/answer", views.offer_answer, name="offer_answer"),
    path("a/<str:token>/unsubscribe", views.unsubscribe, name="unsubscribe"),
    path("selfservice/language/", set_language, name="language"),
]
