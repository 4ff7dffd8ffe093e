from django.urls import path

from careline.conversations import views

app_name = "conversations"
urlpatterns = [
    path("inbox/", views.inbox_list, name="inbox"),
    path("inbox/<int:conversation_id>/", views.conversation_detail, name="detail"),
    path("inbox/<int:conversation_id>/reply/", views.reply, name="reply"),
    path("inbox/<int:conversation_id>/note/", views.note, name="note"),
    path("inbox/<int:conversation_id>/assign/", views.assign, name="assign"),
    path("inbox/<int:conversation_id>/close/", views.close, name="close"),
    path("inbox/<int:conversation_id>/reopen/", views.reopen, name="reopen"),
    path("inbox/<int:conversation_id>/presence/", views.presence, name="presence"),
    path("inbox/<int:conversation_id>/typing/", views.typing, name="typing"),
]
