"""Inbox helpers for the staff screen: presence warnings and canned replies."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from careline.conversations.models import CannedReply, Conversation, ConversationPresence

# Someone whose screen refreshed the conversation this recently is "on it".
PRESENCE_WINDOW = timedelta(seconds=30)


def others_answering(conversation: Conversation, user: AbstractBaseUser) -> list[str]:
    """Record that `user` has the conversation open; name the colleagues who also do."""
    now = timezone.now()
    ConversationPresence.objects.update_or_create(
        conversation=conversation, user=user, defaults={"seen_at": now}
    )
    return list(
        ConversationPresence.objects.filter(
            conversation=conversation, seen_at__gte=now - PRESENCE_WINDOW
        )
        .exclude(user=user)
        .order_by("user__username")
        .values_list("user__username", flat=True)
    )


def canned_replies_for(conversation: Conversation) -> list[tuple[str, str]]:
    """(title, text with the patient's first name and practice filled in)."""
    first_name = conversation.patient.given_name if conversation.patient_id else ""
    practice = conversation.practice.name if conversation.practice_id else ""
    replies = CannedReply.objects.filter(organization_id=conversation.organization_id).filter(
        Q(practice__isnull=True) | Q(practice_id=conversation.practice_id)
    )
    return [
        (
            r.title,
            r.body.replace("{first_name}", first_name or "there").replace("{practice}", practice),
        )
        for r in replies
    ]
