"""HQ settings, read from the environment (see .env.example)."""

from __future__ import annotations

import importlib.util
import zoneinfo
from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The pinned tzdata package is the zone database, never the operating system's copy (which may be
# older or newer than the pin, and which zoneinfo reads first unless told otherwise), so that every
# machine computes the same fire instants. Done here, before any app can load a zone.
zoneinfo.reset_tzpath(to=[])

DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="hq-dev-only-secret-key-not-for-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "hq.apps.HQAdminConfig",  # django.contrib.admin with HQ's site (throttled login)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "hq",
    "queueapp",
    "schedules",
    "delivery",
]
# Swagger UI and ReDoc from an installed package instead of a CDN (/v1/docs and /v1/redoc work
# without internet); without the package the pages load them from jsdelivr and the system check
# hq.W002 says so.
HQ_DOCS_SIDECAR = importlib.util.find_spec("drf_spectacular_sidecar") is not None
if HQ_DOCS_SIDECAR:
    INSTALLED_APPS.append("drf_spectacular_sidecar")
if django.VERSION < (6, 0):
    # Django's Tasks framework, backported (django-tasks); Django 6 has it built in (django.tasks).
    INSTALLED_APPS.append("django_tasks")
# Plugins are ordinary Django apps; each one's `hq_plugin` module is imported at start-up.
HQ_PLUGINS = env.list("HQ_PLUGINS", default=[])
INSTALLED_APPS += [p for p in HQ_PLUGINS if p not in INSTALLED_APPS]

MIDDLEWARE = [
    "hq.api.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "hq.timefmt.ViewerZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hq.urls"
WSGI_APPLICATION = "hq.wsgi.application"
ASGI_APPLICATION = "hq.asgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL connections per process: Django's psycopg pool holds at most HQ_DB_POOL_MAX for all the
# threads of one process (a web server process, runworker's ORM threads), however many requests it
# serves; runworker holds HQ_WORKER_DB_POOL_MAX more for starting and finishing attempts. A thread
# that finds them all busy waits up to HQ_DB_POOL_TIMEOUT_S, then gets an error (503 on the API).
# HQ_DB_POOL_MAX=0 turns the pool off: one connection per thread, kept CONN_MAX_AGE seconds.
HQ_DB_POOL_MAX = env.int("HQ_DB_POOL_MAX", default=8)
HQ_DB_POOL_TIMEOUT_S = env.float("HQ_DB_POOL_TIMEOUT_S", default=5.0)
HQ_WORKER_DB_POOL_MAX = env.int("HQ_WORKER_DB_POOL_MAX", default=4)
# Seconds a client is told to wait (Retry-After) when the API answers 503 for the database.
HQ_UNAVAILABLE_RETRY_AFTER_S = env.int("HQ_UNAVAILABLE_RETRY_AFTER_S", default=2)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serves `make run` without PostgreSQL: WAL and a busy timeout let the web server and
    # one worker share the file.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # IMMEDIATE transactions take the write lock up front, so a transaction that reads then writes
    # waits for the busy timeout instead of failing with "database is locked" when it upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Django's backend with a pool check that costs a round trip at most once a second per connection.
    DATABASES["default"]["ENGINE"] = "hq.pgbackend"
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "application_name", env.str("HQ_DB_APPLICATION_NAME", default="hq")
    )
    # A connection attempt to an address that drops packets gives up after this, not the OS's minutes.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
    # HQ's hot statements (`hq.db.execute_binary`: every job insert, batched update) bind on the
    # server; prepared after their first run, they skip PostgreSQL's planner, which cost about as
    # much as the insert itself (0.45 ms of a 1 ms submit). Django's own cursors bind on the client
    # and are never prepared, so nothing else changes. HQ_DB_PREPARE_THRESHOLD=none turns it off
    # (a transaction-mode pgbouncer older than 1.21 cannot carry prepared statements).
    _prepare = env.str("HQ_DB_PREPARE_THRESHOLD", default="1").strip().lower()
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", None if _prepare == "none" else int(_prepare))
    if HQ_DB_POOL_MAX > 0:
        # One connection is kept open; more are opened on demand up to the maximum and closed after
        # ten idle minutes. Each is verified by a round trip when handed out if it was not verified in
        # the last second (hq.pgbackend); one PostgreSQL killed since fails its request with 503 and
        # is replaced. Pooled connections are returned at the end of each request, which is what
        # CONN_MAX_AGE=0 means here (Django requires it).
        # While PostgreSQL refuses, the pool retries 1, 2, 4 s apart; giving up after 5 s (instead of
        # psycopg's 5 minutes, where the waits grow to 2 minutes) lets the next request start a
        # fresh attempt, so service resumes within seconds of PostgreSQL's return.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "name": "hq-django",
            "min_size": 1,
            "max_size": HQ_DB_POOL_MAX,
            "timeout": HQ_DB_POOL_TIMEOUT_S,
            "reconnect_timeout": 5.0,
        }

AUTH_USER_MODEL = "hq.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Every page shows instants as "2026-12-05 14:30:05 UTC" (hq/formats, hq.timefmt).
FORMAT_MODULE_PATH = ["hq.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The web server serves the static files through WhiteNoise: from STATIC_ROOT when collectstatic has
# run (the image, `make run`), and otherwise straight from the apps' static directories, which it
# indexes at start-up, so the admin is styled with DEBUG=0 without a manual step. The system check
# hq.W001 warns at start-up when a file the admin needs is in neither place.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Request bodies over 1 MiB are refused with 413 (hq.api.middleware).
HQ_MAX_BODY_BYTES = env.int("HQ_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = HQ_MAX_BODY_BYTES

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Prefix for every Redis key and pub/sub channel HQ owns (pub/sub ignores db numbers).
HQ_REDIS_PREFIX = env.str("HQ_REDIS_PREFIX", default="hq:")
# Every Redis command (connecting included) gives up after HQ_REDIS_TIMEOUT_S; after a failure the
# process skips Redis for HQ_REDIS_BACKOFF_S, so a stopped Redis costs a request one timeout at most.
HQ_REDIS_TIMEOUT_S = env.float("HQ_REDIS_TIMEOUT_S", default=0.5)
HQ_REDIS_BACKOFF_S = env.float("HQ_REDIS_BACKOFF_S", default=1.0)

HQ_THROTTLE_RATE = env.str("HQ_THROTTLE_RATE", default="1200/min")
# Failed authentications per client IP; past it, 429 until the window ends (fails open without Redis).
HQ_AUTH_FAILURE_RATE = env.str("HQ_AUTH_FAILURE_RATE", default="30/min")
# A valid token is remembered per process this long: a revocation elsewhere takes effect within it.
HQ_AUTH_CACHE_S = env.float("HQ_AUTH_CACHE_S", default=5.0)
HQ_DEFAULT_MAX_SCHEDULES = env.int("HQ_DEFAULT_MAX_SCHEDULES", default=50)
HQ_DEFAULT_LOCALE = env.str("HQ_DEFAULT_LOCALE", default="en-US")

# Queue engine timings; the README's Configuration table says what each one governs.
HQ_HEARTBEAT_INTERVAL_S = env.float("HQ_HEARTBEAT_INTERVAL_S", default=5.0)
HQ_RELAY_GRACE_S = env.float("HQ_RELAY_GRACE_S", default=10.0)
HQ_RELAY_INTERVAL_S = env.float("HQ_RELAY_INTERVAL_S", default=1.0)
HQ_WORKER_POLL_S = env.float("HQ_WORKER_POLL_S", default=0.5)
HQ_WORKER_CONCURRENCY = env.int("HQ_WORKER_CONCURRENCY", default=100)
# Fair share: one workspace holds at most this share of a worker's slots per queue, and engine jobs
# (schedule fires, deliveries) keep this many slots that ordinary jobs never take.
HQ_WORKSPACE_SHARE = env.float("HQ_WORKSPACE_SHARE", default=0.5)
# The queues clients may name on submit (besides those registered functions use); runworker's default.
HQ_QUEUES = env.list("HQ_QUEUES", default=["default"])
# Django's Tasks framework runs on HQ (README, "Django tasks"): `my_task.enqueue()` records an HQ
# job in the caller's transaction. A task's job belongs to the workspace WORKSPACE names (a slug or
# an id); a task may name its own (`workspace=`).
TASKS = {
    "default": {
        "BACKEND": "queueapp.tasks_backend.HQBackend",
        "QUEUES": HQ_QUEUES,
        "OPTIONS": {"WORKSPACE": env.str("HQ_TASKS_WORKSPACE", default="")},
    }
}
# The longest `hq.sleep` a workspace member may submit (admins: up to its 3600 s limit).
HQ_MEMBER_SLEEP_MAX_S = env.float("HQ_MEMBER_SLEEP_MAX_S", default=60.0)
HQ_ENGINE_RESERVED_SLOTS = env.int("HQ_ENGINE_RESERVED_SLOTS", default=4)
HQ_SHUTDOWN_GRACE_S = env.float("HQ_SHUTDOWN_GRACE_S", default=25.0)
HQ_HITL_EXPIRY_INTERVAL_S = env.float("HQ_HITL_EXPIRY_INTERVAL_S", default=30.0)
HQ_IDEMPOTENCY_WINDOW_S = env.int("HQ_IDEMPOTENCY_WINDOW_S", default=24 * 3600)
# A schedule whose fires fail this many times in a row is paused, with the reason recorded.
HQ_SCHEDULE_MAX_CONSECUTIVE_FAILURES = env.int("HQ_SCHEDULE_MAX_CONSECUTIVE_FAILURES", default=10)
# The longest the scheduler sleeps without a change notification (a safety net, not a tick).
HQ_SCHEDULER_MAX_SLEEP_S = env.float("HQ_SCHEDULER_MAX_SLEEP_S", default=30.0)
# Due schedules claimed per scheduler transaction.
HQ_SCHEDULER_BATCH = env.int("HQ_SCHEDULER_BATCH", default=1000)
# Transactions (each on its own connection) a scheduler runs at once through a backlog larger than
# one batch; PostgreSQL writes one batch while the scheduler builds the next. 1 turns it off.
HQ_SCHEDULER_CONNECTIONS = env.int("HQ_SCHEDULER_CONNECTIONS", default=2)

# Outside services. Base URLs come only from settings (never from a request body), so tests point
# them at loopback servers.
SLACK_BOT_TOKEN = env.str("SLACK_BOT_TOKEN", default="")
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/")
TEAMS_APP_ID = env.str("TEAMS_APP_ID", default="")
TEAMS_APP_PASSWORD = env.str("TEAMS_APP_PASSWORD", default="")
TEAMS_SERVICE_URL = env.str("TEAMS_SERVICE_URL", default="https://smba.trafficmanager.net/teams/")
TEAMS_TOKEN_URL = env.str(
    "TEAMS_TOKEN_URL", default="https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
)
TEAMS_TOKEN_SCOPE = env.str("TEAMS_TOKEN_SCOPE", default="https://api.botframework.com/.default")
HQ_DELIVERY_MAX_ATTEMPTS = env.int("HQ_DELIVERY_MAX_ATTEMPTS", default=5)
HQ_DELIVERY_TIMEOUT_S = env.float("HQ_DELIVERY_TIMEOUT_S", default=10.0)
HQ_AGENT_TIMEOUT_S = env.float("HQ_AGENT_TIMEOUT_S", default=60.0)
HQ_AGENT_MAX_ATTEMPTS = env.int("HQ_AGENT_MAX_ATTEMPTS", default=3)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["hq.api.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["hq.api.permissions.HasScopes"],
    "DEFAULT_THROTTLE_CLASSES": ["hq.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["hq.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "hq.api.pagination.LimitOffset",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "hq.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "hq.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "HQ API",
    "DESCRIPTION": "Jobs, human-in-the-loop approvals and schedules. Authenticate with "
    "`Authorization: Bearer hq_pat_...`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
if HQ_DOCS_SIDECAR:
    SPECTACULAR_SETTINGS.update(SWAGGER_UI_DIST="SIDECAR", SWAGGER_UI_FAVICON_HREF="SIDECAR", REDOC_DIST="SIDECAR")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "arq": {"level": env.str("ARQ_LOG_LEVEL", default="WARNING")},
        # Django's Tasks framework logs every task's start and end at INFO (a failure at ERROR): two
        # lines per task, most of a worker's logging cost at thousands of tasks a second.
        **{name: {"level": env.str("TASKS_LOG_LEVEL", default="WARNING")} for name in ("django_tasks", "django.tasks")},
    },
}

# --- observability ---
# /metrics accepts `Authorization: Bearer <METRICS_TOKEN>` (empty: only a workspace admin's PAT).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# How often each process flushes its buffered counters to Redis (hq.metrics).
HQ_METRICS_FLUSH_S = env.float("HQ_METRICS_FLUSH_S", default=1.0)
# Retention (queueapp.retention): finished jobs, their events and schedule fires older than this go.
HQ_RETENTION_DAYS = env.float("HQ_RETENTION_DAYS", default=30.0)
HQ_RETENTION_INTERVAL_S = env.float("HQ_RETENTION_INTERVAL_S", default=3600.0)
HQ_RETENTION_BATCH = env.int("HQ_RETENTION_BATCH", default=1000)
# First in the chain, so every request is counted by route and status, 413s and 503s included; the
# next one turns a database or Redis outage anywhere inside it into 503, never 500.
MIDDLEWARE = ["hq.api.metrics.RequestMetricsMiddleware", "hq.api.middleware.DependencyErrorMiddleware", *MIDDLEWARE]
