"""Keep patients' link tokens out of every log line that names a request.

A self-service link (/a/<token>, careline.selfservice.links) is a bearer credential: whoever
has the URL can confirm, cancel or move the visit, or take a waitlist offer. The access log
(gunicorn), Django's "Not Found: /a/..." warnings and runserver's request lines all name the
path, so each goes through the same redaction: `/a/[redacted]`.

Imported by the logging configuration before Django's apps are ready: no models here.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

REDACTED = "[redacted]"
# The path segment after /a/, also percent-encoded (a ?next=%2Fa%2F... query) and whatever
# its shape: a mistyped or guessed token is as private as a real one.
_LINK_PATH = re.compile(r"(?i)(/|%2f)a(/|%2f)(?!\[redacted\])[^/?#&;\s\"'<>%]+")


def redact_link_tokens(text: str) -> str:
    """`text` with the token of every /a/<token> path replaced by [redacted]."""
    return _LINK_PATH.sub(lambda m: f"{m[1]}a{m[2]}{REDACTED}", text)


class RedactLinkTokens(logging.Filter):
    """A logging filter: the record's message, formatted, with link tokens redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_link_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's logger (`--logger-class`) with link tokens redacted from its access log
    and its error log ("Error handling request /a/...")."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            if not any(isinstance(f, RedactLinkTokens) for f in log.filters):
                log.addFilter(RedactLinkTokens())
