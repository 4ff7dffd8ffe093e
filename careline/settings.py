"""Careline settings: everything that differs between machines comes from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
import dj_email_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from careline.sqlite import SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("CARELINE_DATA_DIR", Path.cwd()))


def env_bool(name: str, default: bool = False, *, environ=os.environ) -> bool:
    value = environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """SECRET_KEY from the environment; for development, one generated once and kept on disk."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    key_file = DATA_DIR / ".careline-secret-key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
SECRET_KEY_FALLBACKS = [
    k.strip() for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()
]
DEBUG = env_bool("DEBUG")
CARELINE_BASE_URL = os.environ.get("CARELINE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()
] or ["127.0.0.1", "localhost", "[::1]", "testserver"]
_base_host = CARELINE_BASE_URL.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
if _base_host and _base_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_base_host)
CSRF_TRUSTED_ORIGINS = [CARELINE_BASE_URL]

INSTALLED_APPS = [
    "careline.clinics.apps.CarelineAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "careline.web",
    "careline.clinics",
    "careline.patients",
    "careline.scheduling",
    "careline.integrations",
    "careline.messaging",
    "careline.conversations",
    "careline.demo",
    "careline.audit",
    "careline.analytics",
    "careline.broadcasts",
    "careline.api",
    "careline.waitlist",
    "careline.selfservice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "careline.web.middleware.PracticeTimeZoneMiddleware",
    "careline.web.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "careline.urls"
WSGI_APPLICATION = "careline.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "careline.web.navigation.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'careline.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
        # Reused connections are checked first, so a database restart costs no request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions take
    # the write lock up front so check-then-write sequences (booking) cannot interleave.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}; PRAGMA mmap_size={SQLITE_MMAP_BYTES};",
    }
    # A file, not :memory:, so threads and live servers in a test share one database. A
    # stable name lets `pytest --reuse-db` keep it between runs; each checkout has its own.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "careline-test.sqlite3")}
# On PostgreSQL Django's own "test_<name>" is stable; each checkout runs its own cluster
# (scripts/postgres.sh), so two checkouts never share a test database.

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
TIME_ZONE = "UTC"
USE_I18N = True
# Every text a patient reads (self-service pages and the texts Careline sends) is English in
# the code and translated in this one catalog; organizations' own wording (MessageTemplate)
# overrides the planned texts on top of it.
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
# A staff sign-in lasts one practice day, not Django's two weeks.
SESSION_COOKIE_AGE = int(os.environ.get("CARELINE_SESSION_HOURS", "12")) * 3600
SESSION_COOKIE_SECURE = CARELINE_BASE_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
if SESSION_COOKIE_SECURE:
    # Served over HTTPS (usually behind a reverse proxy that sets X-Forwarded-Proto).
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preload is asked for by default (Django's deployment check wants it); turn it off
    # while the domain's subdomains are not all HTTPS-only yet: leaving the preload list
    # takes months.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Webhooks and health checks arrive over plain HTTP only from the proxy itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts, styles and everything else from Careline's
# own origin only. No inline script, handler or style attribute on any page (staff pages,
# patient pages, login, the admin); htmx is told not to inject its indicator <style>
# (meta htmx-config) and needs no eval. An injected <script> or a page framed by another
# site does not run.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Default region for phone numbers typed without a country code.
# How many reverse proxies of ours stand in front of the app: the client's address is then
# the Nth from the right in X-Forwarded-For (careline.clientaddress). 0: use the socket's.
CARELINE_TRUSTED_PROXY_COUNT = int(os.environ.get("CARELINE_TRUSTED_PROXY_COUNT", "0"))
CARELINE_DEFAULT_REGION = os.environ.get("CARELINE_DEFAULT_REGION", "US")
# The MLLP listener (`careline mllp`; each has a command option too) and refused messages.
CARELINE_MLLP_IDLE_TIMEOUT_SECONDS = float(
    os.environ.get("CARELINE_MLLP_IDLE_TIMEOUT_SECONDS", "300")
)
CARELINE_MLLP_MAX_CONNECTIONS = int(os.environ.get("CARELINE_MLLP_MAX_CONNECTIONS", "50"))
CARELINE_MLLP_MAX_FRAME_BYTES = int(os.environ.get("CARELINE_MLLP_MAX_FRAME_BYTES", "1048576"))
CARELINE_HL7_REJECTED_KEEP = int(os.environ.get("CARELINE_HL7_REJECTED_KEEP", "10000"))
CARELINE_HL7_REJECTED_DAYS = int(os.environ.get("CARELINE_HL7_REJECTED_DAYS", "30"))

# Twilio (CARELINE_SMS_GATEWAY=twilio). Texts go from the practice's number, or through the
# Messaging Service when one is set; TWILIO_API_BASE_URL points the client elsewhere
# (a local fake in tests, an egress relay), blank means Twilio's own hosts.
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")
TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "").rstrip("/")
TWILIO_TIMEOUT_SECONDS = float(os.environ.get("TWILIO_TIMEOUT_SECONDS", "10"))
# Reminder calls (Programmable Voice) come from the practice's number when it is a number
# (calls cannot come from a Messaging Service), else from this voice-capable number.
TWILIO_VOICE_FROM_NUMBER = os.environ.get("TWILIO_VOICE_FROM_NUMBER", "")
# A text that waited this long for a web process, or for the database's write lock, is
# refused with 503 + Retry-After (Twilio sends it again) instead of queueing further.
CARELINE_WEBHOOK_MAX_WAIT_SECONDS = float(os.environ.get("CARELINE_WEBHOOK_MAX_WAIT_SECONDS", "1"))

# A broadcast audience of at most this many patients (an upper bound read from indexes) is
# counted in the request; a larger one by the worker while the page polls (issue 21).
CARELINE_BROADCAST_INLINE_COUNT = int(os.environ.get("CARELINE_BROADCAST_INLINE_COUNT", "5000"))

# Messaging: which gateway sends texts, and the rules the worker checks at the last moment.
# The simulator (texts land on /simulator/, never on a phone) is the default only with
# DEBUG on; in production it must be chosen explicitly (`make run` does, for the demo),
# and `careline check --deploy` warns while it is on. Unset with DEBUG off: no gateway,
# and `careline serve` / `careline worker` refuse to start until one is chosen.
CARELINE_SMS_GATEWAY = os.environ.get("CARELINE_SMS_GATEWAY", "") or ("simulator" if DEBUG else "")
# Artificial latency of the simulator gateway, for crash and rate tests.
CARELINE_SIMULATOR_DELAY_MS = float(os.environ.get("CARELINE_SIMULATOR_DELAY_MS", "0"))
# Texts other than replies go out only between these local hours of the practice.
CARELINE_SENDING_HOURS_START = int(os.environ.get("CARELINE_SENDING_HOURS_START", "8"))
CARELINE_SENDING_HOURS_END = int(os.environ.get("CARELINE_SENDING_HOURS_END", "21"))
# Automated calls start only between these local hours of the patient (TCPA), at most one a
# day and three a week per patient, texts included; a busy or unanswered call is tried
# once more this many minutes later, the same day, within the hours.
CARELINE_CALLING_HOURS_START = int(os.environ.get("CARELINE_CALLING_HOURS_START", "8"))
CARELINE_CALLING_HOURS_END = int(os.environ.get("CARELINE_CALLING_HOURS_END", "21"))
CARELINE_CALL_RETRY_MINUTES = int(os.environ.get("CARELINE_CALL_RETRY_MINUTES", "60"))
# Calls placed per second per worker (Twilio's default account limit is 1); 0 = no limit.
CARELINE_CALLS_PER_SECOND = float(os.environ.get("CARELINE_CALLS_PER_SECOND", "1"))
CARELINE_MAX_TEXTS_PER_PATIENT_PER_DAY = int(
    os.environ.get("CARELINE_MAX_TEXTS_PER_PATIENT_PER_DAY", "4")
)
# Segments per second per sender number, per worker process; 0 = no limit.
CARELINE_SENDER_SEGMENTS_PER_SECOND = float(
    os.environ.get("CARELINE_SENDER_SEGMENTS_PER_SECOND", "0")
)
# A row in `sending` longer than this is assumed abandoned by a dead worker and reconciled.
CARELINE_WORKER_LEASE_SECONDS = float(os.environ.get("CARELINE_WORKER_LEASE_SECONDS", "120"))
CARELINE_SEND_MAX_ATTEMPTS = int(os.environ.get("CARELINE_SEND_MAX_ATTEMPTS", "5"))
CARELINE_EMAIL_FROM = os.environ.get("CARELINE_EMAIL_FROM", "reminders@careline.invalid")


def email_settings(environ: os._Environ | dict[str, str]) -> dict[str, object]:
    """Django's EMAIL_* settings from the environment: EMAIL_URL (dj-email-url:
    "smtp://user:password@host:587/?tls=True", "smtp://host:465/?ssl=True",
    "submission://user:password@host" for STARTTLS on 587, "console:", "memory:") or, without
    it, Django's own EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
    EMAIL_USE_TLS, EMAIL_USE_SSL, EMAIL_TIMEOUT, EMAIL_SSL_CERTFILE, EMAIL_SSL_KEYFILE and
    EMAIL_BACKEND. A value Careline cannot use stops it at start, naming the variable."""
    url = environ.get("EMAIL_URL", "").strip()
    if url:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in dj_email_url.SCHEMES:
            raise ImproperlyConfigured(
                f"EMAIL_URL: unknown scheme {scheme!r}; use one of "
                + ", ".join(sorted(dj_email_url.SCHEMES))
            )
        try:
            conf = dj_email_url.parse(url)
        except ValueError as exc:
            # The message may quote the password: name the variable only.
            raise ImproperlyConfigured("EMAIL_URL is not a valid email URL.") from exc
        conf = {k: v for k, v in conf.items() if v is not None or k == "EMAIL_TIMEOUT"}
        conf["EMAIL_HOST_USER"] = conf.get("EMAIL_HOST_USER") or ""
        conf["EMAIL_HOST_PASSWORD"] = conf.get("EMAIL_HOST_PASSWORD") or ""
    else:
        conf = {
            "EMAIL_BACKEND": environ.get(
                "EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
            ),
            "EMAIL_HOST": environ.get("EMAIL_HOST", "localhost"),
            "EMAIL_HOST_USER": environ.get("EMAIL_HOST_USER", ""),
            "EMAIL_HOST_PASSWORD": environ.get("EMAIL_HOST_PASSWORD", ""),
            "EMAIL_USE_TLS": env_bool("EMAIL_USE_TLS", environ=environ),
            "EMAIL_USE_SSL": env_bool("EMAIL_USE_SSL", environ=environ),
            "EMAIL_SSL_CERTFILE": environ.get("EMAIL_SSL_CERTFILE") or None,
            "EMAIL_SSL_KEYFILE": environ.get("EMAIL_SSL_KEYFILE") or None,
        }
        for name in ("EMAIL_PORT", "EMAIL_TIMEOUT"):
            if environ.get(name, "").strip():
                try:
                    conf[name] = int(environ[name])
                except ValueError:
                    raise ImproperlyConfigured(f"{name} must be a whole number.") from None
        conf.setdefault("EMAIL_PORT", 465 if conf["EMAIL_USE_SSL"] else 25)
        if conf["EMAIL_USE_TLS"] and conf["EMAIL_USE_SSL"]:
            raise ImproperlyConfigured(
                "EMAIL_USE_TLS and EMAIL_USE_SSL: set one of them, not both "
                "(TLS: STARTTLS, usually port 587; SSL: implicit TLS, usually port 465)."
            )
    # Django waits forever by default: a mail server that stops answering would stop the
    # worker's texts too.
    if conf.get("EMAIL_TIMEOUT") is None:
        conf["EMAIL_TIMEOUT"] = 10
    return conf


_email = email_settings(os.environ)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_SSL_CERTFILE = _email.get("EMAIL_SSL_CERTFILE")
EMAIL_SSL_KEYFILE = _email.get("EMAIL_SSL_KEYFILE")
EMAIL_TIMEOUT = _email["EMAIL_TIMEOUT"]
if "EMAIL_FILE_PATH" in _email and _email["EMAIL_FILE_PATH"]:
    EMAIL_FILE_PATH = _email["EMAIL_FILE_PATH"]
DEFAULT_FROM_EMAIL = _email.get("DEFAULT_FROM_EMAIL", CARELINE_EMAIL_FROM)
SERVER_EMAIL = _email.get("SERVER_EMAIL", CARELINE_EMAIL_FROM)

# Two-way texting. Office hours decide the inbox's after-hours auto-reply (practice local
# time, e.g. "Mon-Fri 08:00-18:00"); a numbered question (times to move a visit to, which
# visit) is answered by number for this many hours, then replies are read from scratch.
CARELINE_OFFICE_HOURS = os.environ.get("CARELINE_OFFICE_HOURS", "Mon-Fri 08:00-18:00")
CARELINE_REPLY_CHOICE_HOURS = int(os.environ.get("CARELINE_REPLY_CHOICE_HOURS", "24"))

# Self-service and waitlist. Offers go to this many waitlisted patients at a time and stay
# open this long; a slot starting sooner than the lead time is not offered any more.
CARELINE_WAITLIST_BATCH_SIZE = int(os.environ.get("CARELINE_WAITLIST_BATCH_SIZE", "3"))
CARELINE_WAITLIST_OFFER_MINUTES = int(os.environ.get("CARELINE_WAITLIST_OFFER_MINUTES", "15"))
CARELINE_WAITLIST_MIN_LEAD_MINUTES = int(os.environ.get("CARELINE_WAITLIST_MIN_LEAD_MINUTES", "60"))

# Upcoming visits the no-show model rates at or above this go on the call list.
CARELINE_NOSHOW_CALL_THRESHOLD = float(os.environ.get("CARELINE_NOSHOW_CALL_THRESHOLD", "0.3"))
# How often the worker re-scores upcoming visits with the no-show model (and so decides
# the extra touch for high-risk visits two days ahead).
CARELINE_NOSHOW_SCORING_SECONDS = float(os.environ.get("CARELINE_NOSHOW_SCORING_SECONDS", "3600"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Request paths in log lines (Django's "Not Found: ...", runserver's request lines) can
    # be patients' link tokens: every line goes through the redaction.
    "filters": {"link_tokens": {"()": "careline.web.access_log.RedactLinkTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["link_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Their DEBUG lines carry request URLs and template contexts, which can hold patients'
    # numbers and texts: never below INFO, whatever LOG_LEVEL says.
    "loggers": {
        "urllib3": {"level": "INFO"},
        "django.template": {"level": "INFO"},
        # runserver's own handler would print request lines unredacted.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
