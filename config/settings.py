"""Settings for CAR-T Watch, every knob read from the environment (12-factor).

The embedded default (no variable set) runs on SQLite and kombu's ``filesystem://`` broker so that a clinic can
start it with no server at all; ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis, which is
production. ``DJANGO_ENV=production`` turns on the hardened settings and refuses to start without a secret key.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CARTWATCH_VAR_DIR", BASE_DIR / "var"))

# Every value may instead be read from a file named by ``NAME_FILE`` (Docker/Kubernetes secrets).
env = environ.FileAwareEnv()


class ConfigurationError(ImproperlyConfigured, SystemExit):
    """A setting the service refuses to start with. Uncaught it ends the process with its one-line reason and exit
    status 1 (no traceback to read through); code that checks settings can still catch ``ImproperlyConfigured``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.code = f"configuration error: {reason}"


def env_flag(name: str, default: bool) -> bool:
    """A strict boolean: true/false, 1/0, yes/no or on/off; anything else refuses to start (a typo must not turn a
    safety switch off)."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in {"true", "1", "yes", "on"}:
        return True
    if raw in {"false", "0", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


DEVELOPMENT_SECRET_KEY = "insecure-embedded-default-key-for-development-only-0123456789abcdef"


def secret_key_weakness(key: str) -> str | None:
    """Why a production secret key is too weak to sign sessions and patient links (Django's own deployment check
    uses the same bar), or None."""
    if len(key) < 50:
        return "shorter than 50 characters"
    if len(set(key)) < 5:
        return "fewer than 5 different characters"
    if key.startswith("django-insecure-") or key == DEVELOPMENT_SECRET_KEY:
        return "a published development key"
    return None


ENVIRONMENT = env.str("DJANGO_ENV", default="development")
if ENVIRONMENT not in {"development", "test", "production"}:
    raise ConfigurationError(f"DJANGO_ENV must be development, test or production, not {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_flag("DJANGO_DEBUG", default=False)
if DEBUG and PRODUCTION:
    raise ConfigurationError("DJANGO_DEBUG must be off in production: debug pages show settings and patient data")
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if PRODUCTION:
    if not SECRET_KEY:
        raise ConfigurationError("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required in production")
    if weakness := secret_key_weakness(SECRET_KEY):
        raise ConfigurationError(f"DJANGO_SECRET_KEY is too weak for production: {weakness}")
elif not SECRET_KEY:
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# How many reverse proxies in front of the web server append to X-Forwarded-For (1 behind the compose file's Caddy).
# The client address of the audit trail and of the sign-in and API throttles is the entry that many hops from the
# right; with 0 the header is ignored (a client could write anything in it) and the socket's address is used.
TRUSTED_PROXIES = env.int("CARTWATCH_TRUSTED_PROXIES", default=0)
# Links in emails point here; without it, at the address `make run` serves (bin/serve's host and port).
SITE_URL = env.str(
    "CARTWATCH_SITE_URL",
    default=f"http://{env.str('CARTWATCH_HOST', default='127.0.0.1')}:{env.int('CARTWATCH_PORT', default=8000)}",
).rstrip("/")

INSTALLED_APPS = [
    # First, so that its admin/base_site.html (the workspace's stylesheet on every admin page) is found before
    # Django's own; it overrides no other admin template.
    "surveillance",
    "surveillance.admin.apps.CartWatchAdminConfig",  # Django's admin with the CAR-T Watch site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # single-use recovery codes
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "anymail",
]

MIDDLEWARE = [
    "surveillance.metrics.RequestMetricsMiddleware",  # request latency by route, for /metrics
    "surveillance.api.exceptions.ApiProblemMiddleware",  # outermost: every /api/ error in the one format
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the browser's language (Accept-Language): needs the session
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): signed in with a second factor
    "surveillance.access.language.StaffLanguageMiddleware",  # the signed-in user's own language, over the browser's
    "surveillance.access.audit.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]
# The chain of API requests that carry a token (``surveillance.api.token_requests``): the browser's middleware
# (static files, session, CSRF, sign-in, second factor, staff language, messages, the pages' policy) has nothing
# to do for them. The rest is the same, in the same order.
API_TOKEN_MIDDLEWARE = [
    "surveillance.metrics.RequestMetricsMiddleware",
    "surveillance.api.exceptions.ApiProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "surveillance.access.audit.AuditMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "surveillance.api.token_requests.ApiContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cartwatch.sqlite3'}")}
if not ({"DATABASE_URL", "DATABASE_URL_FILE"} & set(os.environ)):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60 if PRODUCTION else 0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and beat read while one of them writes; the busy timeout makes a
    # writer wait for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # The tests' database is a file too, not the in-memory default: in memory, SQLite shares one cache between
    # connections, whose table locks fail at once whatever the busy timeout, so the tests of two workers racing
    # for a claim would test that mode rather than the file the embedded default runs on.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-cartwatch.sqlite3")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's cursors bind parameters client-side and never prepare; psycopg prepares the statements asked to be
    # (``prepare=True``: the dispatcher's after every message, the visit list's page) only when a threshold is set.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
# The workspace's own translations (locale/es/LC_MESSAGES/django.po, with its compiled .mo committed beside it).
LOCALE_PATHS = [BASE_DIR / "locale"]
# The admin's one date format ("3 Mar 2026") and times with their zone abbreviation.
FORMAT_MODULE_PATH = ["surveillance.admin.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security --------------------------------------------------------------------------------------------------
SESSION_COOKIE_AGE = env.int("CARTWATCH_SESSION_IDLE_SECONDS", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # the age above is therefore an idle timeout
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Everything the pages use is served by the service itself (clinics may be offline): nothing from elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "script-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The container's own health checks call the web server over plain HTTP on its port, past the TLS front.
    SECURE_REDIRECT_EXEMPT = [r"^health/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Staff sign-in with a second factor (TOTP, django-otp): staff with a confirmed device always give a code; with
# CARTWATCH_REQUIRE_2FA (on in production) staff without one get no further than enrolling their first device, and
# only while their account is younger than CARTWATCH_FIRST_ENROLMENT_DAYS; older accounts need an administrator
# (`manage.py enroll_totp USERNAME`).
CARTWATCH_REQUIRE_2FA = env_flag("CARTWATCH_REQUIRE_2FA", default=PRODUCTION)
CARTWATCH_FIRST_ENROLMENT_DAYS = env.int("CARTWATCH_FIRST_ENROLMENT_DAYS", default=7)
OTP_TOTP_ISSUER = "CAR-T Watch"

# --- Logging: ids only, never patient data -------------------------------------------------------------------
# CARTWATCH_LOG_FORMAT=json writes one JSON object per line (for a log collector); plain is for people.
LOG_FORMAT = env.str("CARTWATCH_LOG_FORMAT", default="plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ConfigurationError(f"CARTWATCH_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logformat.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.security": {"level": "ERROR"},
        # SQL is logged at DEBUG with its parameters, which are patient data: never, whatever DJANGO_LOG_LEVEL says
        "django.db.backends": {"level": "INFO"},
    },
}

# --- Celery: the database is the source of truth, the broker carries "do this batch now" messages ----------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": 3600}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("out", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = env_flag("CELERY_TASK_ALWAYS_EAGER", default=False)
# Deployments (or test runs) sharing one broker keep apart by queue name.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# With JSON logs the worker and beat keep the LOGGING above (Celery would otherwise put its own text format on the
# root logger).
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT == "plain"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# A static schedule: the dispatcher every minute, rendering ahead every five, the API's idempotency keys purged
# hourly, the missed-visit sweep daily, the care-team digests daily and weekly.
# Each task only says "do this batch now"; what is due is decided from the database.
CELERY_BEAT_SCHEDULE = {
    "dispatch-due-reminders": {
        "task": "surveillance.reminders.tasks.dispatch_due_reminders",
        "schedule": env.float("CARTWATCH_DISPATCH_INTERVAL_SECONDS", default=60.0),
        # a run that waited longer than the interval is superseded by the next one
        "options": {"expires": env.float("CARTWATCH_DISPATCH_INTERVAL_SECONDS", default=60.0)},
    },
    "prepare-reminders": {
        "task": "surveillance.reminders.tasks.prepare_reminders",
        "schedule": env.float("CARTWATCH_PREPARE_INTERVAL_SECONDS", default=300.0),
        "options": {"expires": env.float("CARTWATCH_PREPARE_INTERVAL_SECONDS", default=300.0)},
    },
    "daily-sweep": {
        "task": "surveillance.reminders.tasks.daily_sweep",
        "schedule": crontab(minute=15, hour=2),
    },
    "deliver-webhooks": {
        "task": "surveillance.integrations.tasks.deliver_webhooks",
        "schedule": env.float("CARTWATCH_WEBHOOK_INTERVAL_SECONDS", default=60.0),
        "options": {"expires": env.float("CARTWATCH_WEBHOOK_INTERVAL_SECONDS", default=60.0)},
    },
    "purge-idempotency-keys": {
        "task": "surveillance.integrations.tasks.purge_idempotency_keys",
        "schedule": crontab(minute=40),
    },
    # import jobs: starts the queued ones (requests also ask for a run at once) and resumes those of a dead worker
    "run-import-jobs": {
        "task": "surveillance.imports.tasks.run_import_jobs",
        "schedule": env.float("CARTWATCH_IMPORT_INTERVAL_SECONDS", default=60.0),
        "options": {"expires": env.float("CARTWATCH_IMPORT_INTERVAL_SECONDS", default=60.0)},
    },
    # EHR pulls: a Bulk Data $export of every enabled EHR connection (each claimed by one worker at a time)
    "pull-ehr-connections": {
        "task": "surveillance.imports.tasks.pull_ehr_connections",
        "schedule": env.float("CARTWATCH_EHR_PULL_INTERVAL_SECONDS", default=3600.0),
        "options": {"expires": env.float("CARTWATCH_EHR_PULL_INTERVAL_SECONDS", default=3600.0)},
    },
    "weekly-care-team-digest": {  # hourly: each centre's digest goes out at 07:00 on its own Monday
        "task": "surveillance.reminders.tasks.weekly_digest",
        "schedule": crontab(minute=0),
    },
    "daily-care-team-digest": {  # hourly: each centre's window-open digest goes out at 07:00 on its own day
        "task": "surveillance.reminders.tasks.daily_digest",
        "schedule": crontab(minute=0),
    },
}

# --- Email --------------------------------------------------------------------------------------------------
# EMAIL_URL (smtp://, smtp+tls://, smtps://, consolemail://, filemail:///path) or, without it, the usual
# EMAIL_HOST / EMAIL_PORT / EMAIL_HOST_USER / EMAIL_HOST_PASSWORD(_FILE) / EMAIL_USE_TLS / EMAIL_USE_SSL.
# The embedded default writes each message to a file under var/mail/ and logs one line saying so.
if {"EMAIL_URL", "EMAIL_URL_FILE"} & set(os.environ) or (PRODUCTION and "EMAIL_HOST" not in os.environ):
    _email = env.email_url("EMAIL_URL", default="smtp://localhost:25")
    vars().update(_email)
elif "EMAIL_HOST" not in os.environ:
    EMAIL_BACKEND = "config.mail.SummaryFileEmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env.str("EMAIL_HOST")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env_flag("EMAIL_USE_TLS", default=False)
    EMAIL_USE_SSL = env_flag("EMAIL_USE_SSL", default=False)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ConfigurationError("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: pick one")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)  # an SMTP server that hangs must not hang a worker
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="CAR-T Watch <no-reply@cartwatch.invalid>")

# --- SMS -----------------------------------------------------------------------------------------------------
# CARTWATCH_SMS_BACKEND is a dotted path, like EMAIL_BACKEND. The embedded default writes each SMS to a file under
# var/sms/; surveillance.reminders.sms_backends.TwilioSmsBackend sends through Twilio (the TWILIO_* variables,
# each also readable from NAME_FILE). The auth token also verifies Twilio's signed webhooks.
CARTWATCH_SMS_BACKEND = env.str(
    "CARTWATCH_SMS_BACKEND", default="surveillance.reminders.sms_backends.SummaryFileSmsBackend"
)
SMS_FILE_PATH = str(VAR_DIR / "sms")
SMS_TIMEOUT = env.int("CARTWATCH_SMS_TIMEOUT", default=15)  # a provider that hangs must not hang a worker
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_URL = env.str("TWILIO_API_URL", default="")
if CARTWATCH_SMS_BACKEND.endswith(".TwilioSmsBackend") and not (
    TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN and (TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID)
):
    raise ConfigurationError(
        "the Twilio SMS backend needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER or "
        "TWILIO_MESSAGING_SERVICE_SID"
    )

# --- Email delivery events ------------------------------------------------------------------------------------
# Bounces and complaints reported after the relay accepted a message, through django-anymail's tracking webhook of
# the relay's email service provider, at /integrations/<esp>/tracking/ for each ESP named in
# CARTWATCH_EMAIL_TRACKING (comma-separated: mailgun, brevo; by default mailgun when its signing key is set). Each
# is served only once its events can be verified: Mailgun's by MAILGUN_WEBHOOK_SIGNING_KEY (its HTTP webhook
# signing key), Brevo's by the basic auth of ANYMAIL_WEBHOOK_SECRET ("user:password", which Mailgun's also check
# when it is set); otherwise the URL answers 404.
ANYMAIL = {
    "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
    "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="") or None,
}
# (empty counts as unset: Compose passes every variable, set or not)
CARTWATCH_EMAIL_TRACKING = env.list("CARTWATCH_EMAIL_TRACKING", default=[]) or (
    ["mailgun"] if ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] else []
)

# --- The surveillance domain ---------------------------------------------------------------------------------
CARTWATCH = {
    # Lifelong annual visits are planned up to this many years after infusion; re-planning extends them.
    "HORIZON_YEARS": env.int("CARTWATCH_HORIZON_YEARS", default=30),
    # Local hour at which reminders go out (the patient's time zone, else the centre's).
    "REMINDER_HOUR": env.int("CARTWATCH_REMINDER_HOUR", default=9),
    "SEEDS_DIR": Path(env.str("CARTWATCH_SEEDS_DIR", default=str(BASE_DIR / "seeds"))),
    # Reminder rows are planned for visits due within this many days; the daily sweep tops the outbox up.
    "REMINDER_LOOKAHEAD_DAYS": env.int("CARTWATCH_REMINDER_LOOKAHEAD_DAYS", default=120),
    # Days after a window closes before the sweep marks the visit missed (time to enter a visit done late).
    "MISSED_GRACE_DAYS": env.int("CARTWATCH_MISSED_GRACE_DAYS", default=3),
    # The dispatcher: rows claimed per batch (one SMTP connection each), how long a claim holds before another
    # worker may take it back, attempts before a temporary failure becomes final, the first retry delay (doubling
    # each time), and how long one run keeps draining before it hands back to beat. A batch costs a fixed few
    # milliseconds whatever its size (the claim and its commit, the read, the SMTP greeting), many more on a busy
    # machine: at 50 rows that was a fifth of the sending time. 200 rows go out in well under a second, far inside
    # the lease, and a burst of more than that still brings the other dispatchers in.
    "REMINDER_BATCH_SIZE": env.int("CARTWATCH_REMINDER_BATCH_SIZE", default=200),
    "REMINDER_LEASE_SECONDS": env.int("CARTWATCH_REMINDER_LEASE_SECONDS", default=300),
    "REMINDER_MAX_ATTEMPTS": env.int("CARTWATCH_REMINDER_MAX_ATTEMPTS", default=6),
    "REMINDER_RETRY_SECONDS": env.int("CARTWATCH_REMINDER_RETRY_SECONDS", default=60),
    "DISPATCH_BUDGET_SECONDS": env.int("CARTWATCH_DISPATCH_BUDGET_SECONDS", default=50),
    # Dispatchers that drain a burst together (one per worker slot; the run that finds more than a batch due asks
    # the others to join).
    "DISPATCH_PARALLEL": env.int("CARTWATCH_DISPATCH_PARALLEL", default=2),
    # Messages whose hand-off markers are committed together (one wait for the disk per group); each outcome is
    # recorded as the server gives it. A killed worker doubles at most the message in flight, but the re-sends
    # of its whole group are flagged as possible duplicates (same Message-ID); 1 flags only that one, at a cost
    # in throughput.
    "REMINDER_COMMIT_EVERY": env.int("CARTWATCH_REMINDER_COMMIT_EVERY", default=20),
    # Reminders due within this many minutes are rendered ahead (at most this many per run), so that the burst at
    # the reminder hour only sends bytes.
    "REMINDER_PREPARE_MINUTES": env.int("CARTWATCH_REMINDER_PREPARE_MINUTES", default=120),
    "REMINDER_PREPARE_LIMIT": env.int("CARTWATCH_REMINDER_PREPARE_LIMIT", default=5000),
    # /health/ answers 503 when no dispatcher run has finished for this long, or a reminder is this late.
    "HEALTH_DISPATCHER_STALL_SECONDS": env.int("CARTWATCH_HEALTH_DISPATCHER_STALL_SECONDS", default=300),
    "HEALTH_REMINDER_LATE_SECONDS": env.int("CARTWATCH_HEALTH_REMINDER_LATE_SECONDS", default=900),
    # ... or when reminders have waited this long because the mail relay cannot be reached.
    "HEALTH_MAIL_UNREACHABLE_SECONDS": env.int("CARTWATCH_HEALTH_MAIL_UNREACHABLE_SECONDS", default=180),
    # Counts on /health/ stop at this many (a count of a large outbox would make every probe slow).
    "HEALTH_COUNT_LIMIT": env.int("CARTWATCH_HEALTH_COUNT_LIMIT", default=10_000),
    # /metrics answers this bearer token; without one, only clients on loopback (a scraper beside the process).
    "METRICS_TOKEN": env.str("CARTWATCH_METRICS_TOKEN", default=""),
    # Patient links in emails (confirm, reschedule, done elsewhere) stop working after this many days.
    "LINK_MAX_AGE_DAYS": env.int("CARTWATCH_LINK_MAX_AGE_DAYS", default=180),
    # Days after diagnosis before an open malignancy reporting step escalates (clinical reference (e) 5).
    "REPORTING_STEP_DAYS": env.int("CARTWATCH_REPORTING_STEP_DAYS", default=7),
    # Days a second-cancer signal review may stay open with no decision before the daily sweep escalates it.
    "SIGNAL_ESCALATE_DAYS": env.int("CARTWATCH_SIGNAL_ESCALATE_DAYS", default=7),
    # The care team's daily digest lists a visit whose window opened at most this many days before (and that is
    # not yet due); an older window-open notice, a catch-up after planning or downtime, is skipped as stale.
    "WINDOW_OPEN_NOTICE_MAX_DAYS": env.int("CARTWATCH_WINDOW_OPEN_NOTICE_MAX_DAYS", default=7),
    # EHR imports: a larger upload is refused with 413 before anything is read.
    "IMPORT_MAX_BYTES": env.int("CARTWATCH_IMPORT_MAX_BYTES", default=50 * 1024 * 1024),
    # Import jobs: a larger upload (or one sent with "Prefer: respond-async") is stored and imported by a worker,
    # answering 202 and a status URL. NDJSON commits every IMPORT_BATCH_LINES lines with the job's progress, which
    # renews its lease; a Bundle or CSV is one transaction, so the lease must outlast the longest of those. A job
    # claimed IMPORT_MAX_ATTEMPTS times without finishing fails; a worker run stops starting jobs after
    # IMPORT_BUDGET_SECONDS.
    "IMPORT_SYNC_MAX_BYTES": env.int("CARTWATCH_IMPORT_SYNC_MAX_BYTES", default=256 * 1024),
    "IMPORT_BATCH_LINES": env.int("CARTWATCH_IMPORT_BATCH_LINES", default=500),
    # A job reads its stored upload this much at a time (its memory holds one chunk, never the whole upload).
    "IMPORT_READ_CHUNK_BYTES": env.int("CARTWATCH_IMPORT_READ_CHUNK_BYTES", default=4 * 1024 * 1024),
    "IMPORT_LEASE_SECONDS": env.int("CARTWATCH_IMPORT_LEASE_SECONDS", default=900),
    "IMPORT_MAX_ATTEMPTS": env.int("CARTWATCH_IMPORT_MAX_ATTEMPTS", default=5),
    "IMPORT_BUDGET_SECONDS": env.int("CARTWATCH_IMPORT_BUDGET_SECONDS", default=300),
    # EHR pulls (Bulk Data $export): /health/ calls a connection degraded when its last pull failed or none
    # finished for EHR_PULL_STALE_HOURS; a worker's claim on a pull holds this long without progress; one run polls
    # an export still being prepared for at most EHR_PULL_WAIT_SECONDS, then leaves it to the next beat; each
    # request times out after EHR_PULL_TIMEOUT_SECONDS and is tried EHR_PULL_HTTP_ATTEMPTS times on a 5xx, a 429 or
    # a dropped connection (waits doubling from EHR_PULL_HTTP_RETRY_SECONDS, or the server's Retry-After); a file
    # larger than EHR_PULL_MAX_FILE_BYTES is refused.
    "EHR_PULL_STALE_HOURS": env.int("CARTWATCH_EHR_PULL_STALE_HOURS", default=6),
    "EHR_PULL_LEASE_SECONDS": env.int("CARTWATCH_EHR_PULL_LEASE_SECONDS", default=900),
    "EHR_PULL_WAIT_SECONDS": env.int("CARTWATCH_EHR_PULL_WAIT_SECONDS", default=300),
    "EHR_PULL_TIMEOUT_SECONDS": env.int("CARTWATCH_EHR_PULL_TIMEOUT_SECONDS", default=60),
    "EHR_PULL_HTTP_ATTEMPTS": env.int("CARTWATCH_EHR_PULL_HTTP_ATTEMPTS", default=4),
    "EHR_PULL_HTTP_RETRY_SECONDS": env.float("CARTWATCH_EHR_PULL_HTTP_RETRY_SECONDS", default=2.0),
    "EHR_PULL_MAX_FILE_BYTES": env.int("CARTWATCH_EHR_PULL_MAX_FILE_BYTES", default=2 * 1024**3),
    # Outbound webhooks: per-request timeout, attempts before a delivery fails (delays double from the first
    # retry delay), how long a claim holds, rows per batch, and how long one run keeps draining.
    "WEBHOOK_TIMEOUT_SECONDS": env.int("CARTWATCH_WEBHOOK_TIMEOUT_SECONDS", default=10),
    "WEBHOOK_MAX_ATTEMPTS": env.int("CARTWATCH_WEBHOOK_MAX_ATTEMPTS", default=8),
    "WEBHOOK_RETRY_SECONDS": env.int("CARTWATCH_WEBHOOK_RETRY_SECONDS", default=60),
    "WEBHOOK_LEASE_SECONDS": env.int("CARTWATCH_WEBHOOK_LEASE_SECONDS", default=120),
    "WEBHOOK_BATCH_SIZE": env.int("CARTWATCH_WEBHOOK_BATCH_SIZE", default=50),
    "WEBHOOK_BUDGET_SECONDS": env.int("CARTWATCH_WEBHOOK_BUDGET_SECONDS", default=50),
    # API POSTs with an Idempotency-Key: how long the key and its stored answer are kept (a retry after that is
    # handled as a new request); purged hourly.
    "IDEMPOTENCY_KEY_HOURS": env.int("CARTWATCH_IDEMPOTENCY_KEY_HOURS", default=24),
    # Webhook targets must resolve to public addresses (no way in to the hospital network or the cloud metadata
    # service); only tests, with a receiver on loopback, turn this on.
    "WEBHOOK_ALLOW_LOOPBACK": env_flag("CARTWATCH_WEBHOOK_ALLOW_LOOPBACK", default=False),
    # Sign-in throttle: failures within the lockout window, per username and per client address.
    "LOGIN_FAILURES_PER_USER": env.int("CARTWATCH_LOGIN_FAILURES_PER_USER", default=5),
    "LOGIN_FAILURES_PER_ADDRESS": env.int("CARTWATCH_LOGIN_FAILURES_PER_ADDRESS", default=20),
    "LOGIN_LOCKOUT_SECONDS": env.int("CARTWATCH_LOGIN_LOCKOUT_SECONDS", default=15 * 60),
}

# --- Cache ------------------------------------------------------------------------------------------------------
# The API's rate limits count in it, so in production it is a Redis server every web worker shares
# (CARTWATCH_CACHE_URL, e.g. redis://redis:6379/1); without one, each process counts on its own.
CACHE_URL = env.str("CARTWATCH_CACHE_URL", default="")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- REST API -----------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "surveillance.api.schema.ApiAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "surveillance.api.auth.ApiTokenAuthentication",
        "surveillance.api.auth.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["surveillance.api.permissions.CentreCaller"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "surveillance.api.pagination.ApiCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["surveillance.api.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["surveillance.api.parsers.JsonParser"],
    "DEFAULT_THROTTLE_CLASSES": ["surveillance.api.throttling.PerTokenRateThrottle"],
    # Per token (integrations), per user (staff sessions); counted in the cache above, shared by the web workers.
    "DEFAULT_THROTTLE_RATES": {
        "token": env.str("CARTWATCH_API_RATE_TOKEN", default="600/min"),
        "staff": env.str("CARTWATCH_API_RATE_STAFF", default="300/min"),
        "anon": "60/min",
    },
    "EXCEPTION_HANDLER": "surveillance.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CAR-T Watch API",
    "DESCRIPTION": (
        "Surveillance follow-up after CAR T-cell therapy: patients, infusions, visits, imports.\n\n"
        "**Authentication.** Send `Authorization: Bearer <token>` with every request. An administrator of the "
        "service issues a token to an integration, for one or more treatment centres (`manage.py "
        "create_api_token`); it is shown once, and a read-only token may only read. A token sees only its "
        "centres' patients: another centre's id answers as one that does not exist.\n\n"
        "`GET /api/v1/` lists every resource. The integration guide (the README's *Integration guide* section) "
        "covers identity matching on import, the codes accepted, webhooks and idempotent retries."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VisitStatusEnum": "surveillance.models.visits.VisitStatus",
        "PatientStatusEnum": "surveillance.models.patients.PatientStatus",
        "ReminderStatusEnum": "surveillance.models.reminders.ReminderStatus",
        "ProtocolStatusEnum": "surveillance.models.protocols.ProtocolStatus",
        "VisitKindEnum": "surveillance.models.protocols.VisitKind",
        "ReportingStepKindEnum": "surveillance.models.events.ReportingStepKind",
        "ResultSourceEnum": "surveillance.models.results.ResultSource",
        "FlagSourceEnum": "surveillance.models.patients.FlagSource",
        "ResultOutcomeEnum": "surveillance.models.results.ResultOutcome",
    },
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The docs page is served from the service itself (no CDN): clinics may be offline, and the CSP allows 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
