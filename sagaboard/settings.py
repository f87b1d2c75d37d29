"""Django settings for sagaboard, read from the environment (see CONTRACT.md section 1).

Every variable has a default that works on a laptop: SQLite under var/, an in-memory broker and
channel layer (the embedded mode of `manage.py standalone`). Set DATABASE_URL and REDIS_URL for
the production topology.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from . import env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

DEBUG = env.flag("DJANGO_DEBUG", False)
SECRET_KEY = env.text("DJANGO_SECRET_KEY") or "sagaboard-insecure-development-key-set-DJANGO_SECRET_KEY"
ALLOWED_HOSTS = env.items("DJANGO_ALLOWED_HOSTS") or ["127.0.0.1", "localhost", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = [f"http://{h}" for h in ALLOWED_HOSTS if "*" not in h] + [
    f"https://{h}" for h in ALLOWED_HOSTS if "*" not in h]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "sagas.apps.SagasConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sagaboard.urls"
ASGI_APPLICATION = "sagaboard.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- database --------------------------------------------------------------------------------

DATABASE_URL = env.text("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'sagaboard.sqlite3'}"
try:
    _database = dj_database_url.parse(DATABASE_URL)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web threads read while the embedded worker writes; IMMEDIATE takes the write
    # lock at BEGIN so two writers queue up instead of failing half-way with "database is locked".
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    _database["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    _database["OPTIONS"] = {
        "pool": {"min_size": 1, "max_size": int(env.number("SAGABOARD_DB_POOL_SIZE", 8, 1))},
        # Django turns psycopg's prepared statements off for the sake of transaction-mode poolers;
        # the engine's hot path (sagas/services/sql.py) asks for them explicitly, and without this
        # PostgreSQL parses and plans each of its statements on every step. The ORM's queries
        # (client-side binding) are never prepared either way.
        "prepare_threshold": 5 if env.flag("SAGABOARD_DB_PREPARED_STATEMENTS", True) else None,
    }
else:
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r}: only PostgreSQL and SQLite are supported")
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- broker and channel layer ----------------------------------------------------------------

REDIS_URL = env.text("REDIS_URL")
EMBEDDED = not REDIS_URL
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")

if EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Redis pub/sub ignores the db number: name the channels after it, so that deployments (and
            # test runs) sharing one Redis on different dbs never see each other's live updates.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"sagaboard:{urlsplit(REDIS_URL).path.strip('/') or '0'}"},
        }
    }

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"polling_interval": 0.005} if EMBEDDED else {"visibility_timeout": 600}
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "sagaboard"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection around every task unless told to reuse it.
CELERY_DB_REUSE_MAX = 10_000
CELERY_BEAT_SCHEDULE = {
    "recover-stuck-sagas": {"task": "sagas.tasks.recover", "schedule": 5.0},
}

# --- the engine ------------------------------------------------------------------------------

SAGABOARD_HTTP_ALLOWLIST = env.items("SAGABOARD_HTTP_ALLOWLIST")
# Where this sagaboard is served; HTTP handlers may call its own demo services (/demo/services/) there.
SAGABOARD_PUBLIC_URL = env.text("SAGABOARD_PUBLIC_URL") or "http://127.0.0.1:8000"
# Mount the demo's HTTP services under /demo/services/ (they need no login: turn them off in production).
SAGABOARD_DEMO_SERVICES = env.flag("SAGABOARD_DEMO_SERVICES", True)
# The HTTP client's own timeout for an HTTP step (the step's timeout_seconds still bounds the call).
SAGABOARD_HTTP_TIMEOUT_SECONDS = env.number("SAGABOARD_HTTP_TIMEOUT_SECONDS", 30, 0.1)
SAGABOARD_ALERT_EMAILS = env.items("SAGABOARD_ALERT_EMAILS")
SAGABOARD_ALERT_WEBHOOK = env.text("SAGABOARD_ALERT_WEBHOOK")
# How long past its timeout an attempt's worker may stay silent before recovery takes it over.
SAGABOARD_LEASE_GRACE_SECONDS = env.number("SAGABOARD_LEASE_GRACE_SECONDS", 10)
# How long an active saga may sit with nothing running before recovery enqueues its next call.
# (Embedded: shorter, so that sagas another process started on the same database, e.g. demo_traffic, start soon.)
SAGABOARD_STALL_SECONDS = env.number("SAGABOARD_STALL_SECONDS", 3 if EMBEDDED else 15)
SAGABOARD_MAX_CONTEXT_BYTES = 256 * 1024
# False holds every call in the database instead of sending it to the workers (tests that drive
# sagas by hand use it; recovery sends what is due once it is True again).
SAGABOARD_ENQUEUE = env.flag("SAGABOARD_ENQUEUE", True)
SAGABOARD_HANDLER_MODULES = ["sagas.demo.handlers", *env.items("SAGABOARD_HANDLER_MODULES")]

# --- web -------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request then gets 401 with `WWW-Authenticate: Token`.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["sagas.api.permissions.IsViewer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "sagas.api.errors.exception_handler",
    "DEFAULT_FILTER_BACKENDS": [],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "sagaboard API",
    "DESCRIPTION": "Start, watch and put right distributed transactions (sagas).",
    "VERSION": "1.0.0",
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True

MAILERS = {"default": {"BACKEND": env.text("DJANGO_EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = env.text("DJANGO_DEFAULT_FROM_EMAIL") or "sagaboard@localhost"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"quiet_injected_failures": {"()": "sagas.logfilters.QuietInjectedFailures"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "sagas": {"level": env.text("SAGABOARD_LOG_LEVEL") or "INFO"},
        "django.request": {"filters": ["quiet_injected_failures"]},
    },
}
