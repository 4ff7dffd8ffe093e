"""The wording of planned texts (reminders and appointment notices).

Careline's default for each kind is an English msgid in the gettext catalog
(careline/locale/<lang>/LC_MESSAGES/django.po), translated into the patient's language when
the text is rendered. An organization's own MessageTemplate rows, for the whole organization,
a practice and/or an appointment type, override that default.

The defaults are PHI-minimal (first name, practice, local date and time, a link; never the
visit reason) and ask for C / X / R, which are not carrier keywords, so cancelling a visit
can never be mistaken for an opt-out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from careline.messaging.models import MessageKind, MessageTemplate
from careline.patients.models import Language

# Placeholders are the template variables of careline.messaging.rendering ({first_name}…),
# not %-formats: an organization's override is written in the same language.
DEFAULT_BODIES = {
    MessageKind.REMINDER: gettext_noop(
        "{first_name}: reminder of your visit at {practice} on {date} at {time}. "
        "Reply C to confirm, X to cancel, R to reschedule. {link}"
    ),
    MessageKind.BOOKED: gettext_noop(
        "{first_name}: your visit at {practice} is booked for {date} at {time}, {address}. "
        "Reply X to cancel, R to reschedule. {link}"
    ),
    MessageKind.RESCHEDULED: gettext_noop(
        "{first_name}: your visit at {practice} is now on {date} at {time}. "
        "Reply C to confirm, X to cancel, R to reschedule. {link}"
    ),
    MessageKind.CANCELLED: gettext_noop(
        "{first_name}: your visit at {practice} on {date} at {time} is cancelled. "
        "To book again call {practice_phone} or visit {link}"
    ),
}


def default_body(kind: str, language: str) -> str | None:
    """Careline's text of `kind` in `language` (English where the catalog has no
    translation); None for kinds that are written when sent (replies, broadcasts)."""
    msgid = DEFAULT_BODIES.get(kind)
    if msgid is None:
        return None
    with translation.override(language):
        return gettext(msgid)


def has_default(kind: str, language: str) -> bool:
    """Whether the catalog translates Careline's default into `language` (English always)."""
    body = default_body(kind, language)
    return body is not None and (language == Language.ENGLISH or body != DEFAULT_BODIES[kind])


class _Defaults(Mapping):
    """Careline's default texts by (kind, patient language), read from the catalog when
    asked, so they follow the installed translations."""

    def _keys(self) -> list[tuple[str, str]]:
        return [(kind, language) for kind in DEFAULT_BODIES for language in Language.values]

    def __getitem__(self, key: tuple[str, str]) -> str:
        if key not in self._keys():
            raise KeyError(key)
        return default_body(*key)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


DEFAULTS: Mapping[tuple[str, str], str] = _Defaults()


def find_template(
    *,
    organization_id: int,
    practice_id: int | None,
    appointment_type_id: int | None,
    kind: str,
    language: str,
) -> MessageTemplate | None:
    """The organization's most specific active template in the patient's language, else
    Careline's default in that language, else the organization's English one, else
    Careline's English default. The default comes back unsaved (no pk)."""
    candidates = list(
        MessageTemplate.objects.filter(
            Q(practice_id=practice_id) | Q(practice__isnull=True),
            Q(appointment_type_id=appointment_type_id) | Q(appointment_type__isnull=True),
            organization_id=organization_id,
            kind=kind,
            language__in=[language, Language.ENGLISH],
            active=True,
        )
    )

    def specificity(t: MessageTemplate) -> tuple:
        return (t.appointment_type_id is not None, t.practice_id is not None, t.id)

    own = [t for t in candidates if t.language == language]
    if own:
        return max(own, key=specificity)
    if has_default(kind, language):
        return MessageTemplate(kind=kind, language=language, body=default_body(kind, language))
    english = [t for t in candidates if t.language == Language.ENGLISH]
    if english:
        return max(english, key=specificity)
    body = default_body(kind, Language.ENGLISH)
    return None if body is None else MessageTemplate(kind=kind, language=language, body=body)
