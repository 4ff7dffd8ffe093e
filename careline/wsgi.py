"""The WSGI application gunicorn serves (`careline serve`).

Twilio's webhooks skip the page middleware: they are signed requests from a machine,
answered with a bare status or empty TwiML, and they come in bursts (500 a second after a
broadcast, issue 21). Sessions, sign-in, language, CSRF, static files and the
Content-Security-Policy header have nothing to do for them, and under that load the
middleware cost as much CPU as storing the text (profile in docs/performance.md).
Everything else goes through Django's full stack.
"""

import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings")

# The URL names (careline.urls) of the views that take Twilio's webhooks.
TWILIO_WEBHOOKS = ("twilio_webhooks:sms", "twilio_webhooks:status")


class MachineWebhookHandler(WSGIHandler):
    """Django's WSGI handler without middleware: URL resolution, the view, and the same
    answer to an exception (a 500 page, logged) as the full stack gives."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response)


def route_webhooks(pages, webhooks, paths: set[str]):
    """A WSGI application sending requests for `paths` to `webhooks`, the rest to `pages`."""

    def application(environ, start_response):
        handler = webhooks if environ.get("PATH_INFO") in paths else pages
        return handler(environ, start_response)

    return application


def _application():
    from django.urls import reverse

    pages = get_wsgi_application()  # sets Django up
    return route_webhooks(
        pages, MachineWebhookHandler(), {reverse(name) for name in TWILIO_WEBHOOKS}
    )


application = _application()
