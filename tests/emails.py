"""Reading the emails Careline sent as a mail client would: the raw message parsed by the
standard library, its parts, its links."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message
from email.policy import default as default_policy
from urllib.parse import urlsplit

from django.core import mail

LINK = re.compile(r"https?://[^\s\"'<>]+/a/[A-Za-z0-9_-]{16}(?:/unsubscribe)?")


@dataclass
class ParsedEmail:
    message: Message
    text: str
    html: str
    ics: str
    ics_name: str

    def header(self, name: str) -> str:
        return str(self.message[name]).strip()

    def links(self) -> list[str]:
        """The links of the plain-text part, in order."""
        return LINK.findall(self.text)

    def link_labelled(self, label: str) -> str:
        """The path of the plain-text line "<label>: <link>"."""
        match = re.search(rf"^{re.escape(label)}: (\S+)$", self.text, re.M)
        assert match, (label, self.text)
        return urlsplit(match.group(1)).path


def parse(raw: bytes) -> ParsedEmail:
    message = email.message_from_bytes(raw, policy=default_policy)
    assert message.get_content_type() == "multipart/mixed", message.get_content_type()
    alternative, attachment = message.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.get_payload()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert attachment.get_content_type() == "text/calendar"
    return ParsedEmail(
        message=message,
        text=plain.get_content(),
        html=html.get_content(),
        ics=attachment.get_content(),
        ics_name=attachment.get_filename(),
    )


def sent() -> list[ParsedEmail]:
    """Every email in Django's locmem outbox, as the bytes that would go over SMTP."""
    return [parse(m.message().as_bytes()) for m in mail.outbox]
