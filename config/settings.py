"""Settings, read from the environment (and an optional `.env` file).

With nothing configured the platform runs on embedded defaults: SQLite, a local-memory cache,
a SQLite channel layer and a filesystem Celery broker. Set DATABASE_URL and REDIS_URL for
PostgreSQL and Redis. Every variable is documented in README.md and `.env.example`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))


# Production: refuse to start without the settings a public deployment needs.
PRODUCTION = env.bool("PRODUCTION", default=False)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if value := env.str("SECRET_KEY", default=""):
        return value
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when PRODUCTION is on.")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when PRODUCTION is on.")

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
if PUBLIC_BASE_URL:
    _public = urlsplit(PUBLIC_BASE_URL)
    if _public.hostname and _public.hostname not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_public.hostname)
    _origin = f"{_public.scheme}://{_public.netloc}"
    if _origin not in CSRF_TRUSTED_ORIGINS:
        CSRF_TRUSTED_ORIGINS.append(_origin)

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
TRUST_PROXY_HEADERS = env.bool("TRUST_PROXY_HEADERS", default=False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# Proxies in front of the web processes that each append to X-Forwarded-For: the client address
# is that many entries from the right (config/proxies.py). Only login throttling uses it.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=1 if TRUST_PROXY_HEADERS else 0)

# HTTPS hardening: on in production and whenever the public address is https.
HTTPS = env.bool("HTTPS", default=PRODUCTION or PUBLIC_BASE_URL.startswith("https://"))
if HTTPS:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancer probes and the metrics scraper may speak plain HTTP on the private network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

REDIS_URL = env.str("REDIS_URL", default="")
# After Redis fails, rate limits use per-process counters for this long before trying it again.
REDIS_RETRY_SECONDS = env.float("REDIS_RETRY_SECONDS", default=5.0)
# How long a process keeps a dialled number's rows at most (tenants.directory; 0: not kept).
NUMBER_CACHE_SECONDS = env.float("NUMBER_CACHE_SECONDS", default=30.0)
EMBEDDED = not REDIS_URL

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_prometheus",
    "axes",
    "csp",
    "tenants",
    "assistants",
    "knowledge",
    "tools",
    "calls",
    "insights",
    "rehearsals",
    "webhooks",
    "campaigns",
    "analytics",
    "config",  # system checks of the deployment (config/checks.py)
]
# Stand-ins at the wire, the call simulator and test fixtures (requirements-devtools.txt).
DEVTOOLS = env.bool("DEVTOOLS", default=DEBUG or not PRODUCTION)
if DEVTOOLS:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.TenantScopeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes requires: it answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]
MIDDLEWARE.insert(0, "django_prometheus.middleware.PrometheusBeforeMiddleware")

# Content-Security-Policy (django-csp): scripts, styles and everything else from this site
# only, no inline script or style, no framing. CSP_MEDIA_SOURCES adds where speech audio is
# served from when that is another host (an object store or CDN).
CSP_MEDIA_SOURCES = env.list("CSP_MEDIA_SOURCES", default=[])
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],  # 'self' covers the site's own ws:// and wss:// sockets
        "media-src": [SELF, *CSP_MEDIA_SOURCES],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# /metrics: who may scrape it (see config/metrics.py). Behind a proxy only the token opens it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    # Fail fast when PostgreSQL is unreachable: Twilio waits 15 s at most for a webhook.
    _options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=3))
    # Under ASGI every request runs in a thread of its own, so persistent per-thread
    # connections are never reused: a connection pool per process is (Django 5.1+).
    if env.bool("DB_POOL", default=True):
        # Django's PostgreSQL backend, with the pool's check only for connections that sat
        # idle for DB_POOL_CHECK_IDLE_SECONDS (core/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "core.postgresql"
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        _options["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=40),
            "timeout": env.float("DB_POOL_TIMEOUT", default=2.0),
        }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
    # A file, not memory, so that a Celery worker or server started by a test shares it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DB_POOL_CHECK_IDLE_SECONDS = env.float("DB_POOL_CHECK_IDLE_SECONDS", default=2.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Threads for database work of WebSocket conversations (relay, talk, dashboard) per process.
ASYNC_DB_THREADS = env.int("ASYNC_DB_THREADS", default=16)
# The ASGI server's garbage-collector thresholds (gc.set_threshold; see config/asgi.py).
GC_THRESHOLDS = tuple(
    int(value) for value in env.list("GC_THRESHOLDS", default=["20000", "50", "100"])
)

# --- Cache, channel layer, Celery: Redis when configured, embedded otherwise ----------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="asgi")},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2}
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # A SQLite channel layer in its own database file: events published by the Celery worker
    # reach the server process (the in-memory layer only delivers inside one process).
    INSTALLED_APPS.append("channels_lite")
    DATABASES["channels"] = {
        "ENGINE": "django.db.backends.sqlite3",
        # A process started by a test (server, worker) is pointed at the test's file.
        "NAME": env.str("CHANNELS_DATABASE_PATH", default=str(VAR_DIR / "channels.sqlite3")),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;"},
        "TEST": {"NAME": str(VAR_DIR / "test_channels.sqlite3")},
    }
    DATABASE_ROUTERS = ["channels_lite.router.ChannelsRouter"]
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_lite.layers.core.SQLiteChannelLayer",
            "CONFIG": {"database": "channels"},
        }
    }
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "results", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    # A host name, though the transport ignores it: without one kombu warns on every connection.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    CELERY_RESULT_BACKEND = f"file://{_celery_dir / 'results'}"

CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="voice")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 10
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A webhook that queues speech must not hang on a broker outage (the reply falls back to <Say>).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE = {
    "cleanup-speech-audio": {
        "task": "assistants.tasks.cleanup_speech_audio",
        "schedule": 3600.0,
    },
    "close-stale-calls": {
        "task": "calls.tasks.close_stale_calls",
        "schedule": 900.0,
        "options": {"expires": 900.0},
    },
}

# Call events for the live dashboard: queued per process (at most EVENTS_QUEUE_SIZE; more are
# counted lost) and sent in batches of up to EVENTS_BATCH_SIZE by one thread over a Redis pool of
# EVENTS_REDIS_CONNECTIONS connections (calls/events.py). A batch gathers for at most
# EVENTS_BATCH_MS after its first event (0: send at once).
EVENTS_QUEUE_SIZE = env.int("EVENTS_QUEUE_SIZE", default=20000)
EVENTS_BATCH_SIZE = env.int("EVENTS_BATCH_SIZE", default=200)
EVENTS_BATCH_MS = env.int("EVENTS_BATCH_MS", default=50)
EVENTS_REDIS_CONNECTIONS = env.int("EVENTS_REDIS_CONNECTIONS", default=4)

# Admission control: past any of these a server process refuses new calls politely (core/load.py;
# 0 switches a sign off). Calls in progress are never affected.
LOAD_SAMPLE_SECONDS = env.float("LOAD_SAMPLE_SECONDS", default=0.2)
LOAD_MAX_LOOP_LAG_MS = env.float("LOAD_MAX_LOOP_LAG_MS", default=1000.0)
LOAD_MAX_SESSIONS = env.int("LOAD_MAX_SESSIONS", default=0)
LOAD_MAX_DB_WAIT_MS = env.float("LOAD_MAX_DB_WAIT_MS", default=1000.0)
# Each server process says it is alive every SERVER_HEARTBEAT_SECONDS; the calls held by one
# silent for SERVER_HEARTBEAT_TTL seconds are closed by the sweeper, run every
# SERVER_SWEEP_SECONDS.
SERVER_HEARTBEAT_SECONDS = env.float("SERVER_HEARTBEAT_SECONDS", default=5.0)
SERVER_HEARTBEAT_TTL = env.int("SERVER_HEARTBEAT_TTL", default=20)
SERVER_SWEEP_SECONDS = env.float("SERVER_SWEEP_SECONDS", default=15.0)
CELERY_BEAT_SCHEDULE["close-orphaned-calls"] = {
    "task": "calls.tasks.close_orphaned_calls",
    "schedule": SERVER_SWEEP_SECONDS,
    "options": {"expires": SERVER_SWEEP_SECONDS},
}

SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Pages that need a login send visitors to the dashboard login, which every member may use
# (the admin login takes staff only).
LOGIN_URL = "analytics:login"
# Where a login without `next` lands (Django's default, /accounts/profile/, does not exist).
LOGIN_REDIRECT_URL = "admin:index"

# Login throttling (django-axes) on every login form: after LOGIN_FAILURE_LIMIT failures for one
# username, or from one client address, logins are refused (429) for LOGIN_LOCKOUT_MINUTES.
# The address is the one the trusted proxies vouch for (config/proxies.py), never a forged one.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_CLIENT_IP_CALLABLE = "config.proxies.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are kept (until the cool-off), successes are not
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
# Serve MEDIA_URL from this process (fine for one server; use an object store + CDN at scale).
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=True)
STORAGES = {
    # Speech audio. At scale, an object store behind a CDN, e.g. with django-storages:
    # MEDIA_STORAGE_BACKEND=storages.backends.s3.S3Storage
    # MEDIA_STORAGE_OPTIONS={"bucket_name": "voice-audio", "custom_domain": "cdn.example.com"}
    "default": {
        "BACKEND": env.str(
            "MEDIA_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
        ),
        "OPTIONS": env.json("MEDIA_STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Providers ------------------------------------------------------------------------------
GROQ_API_KEY = env.str("GROQ_API_KEY", default="")
GROQ_BASE_URL = env.str("GROQ_BASE_URL", default="")
# Models an assistant may use (Groq's production models by default).
LLM_MODELS = env.list(
    "LLM_MODELS",
    default=[
        "llama-3.3-70b-versatile",
        "llama-3.1-8b-instant",
        "openai/gpt-oss-120b",
        "openai/gpt-oss-20b",
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "meta-llama/llama-4-maverick-17b-128e-instruct",
        "qwen/qwen3-32b",
        "moonshotai/kimi-k2-instruct-0905",
    ],
)
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
# Twilio's REST API (asked which numbers a tenant's own account holds); empty: Twilio's own.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="")
# Requests to URLs a tenant chose (webhook endpoints, HTTP tools) never reach private, loopback or
# link-local addresses (core/outbound.py), except these networks (CIDR, comma-separated).
OUTBOUND_ALLOWED_NETWORKS = env.list("OUTBOUND_ALLOWED_NETWORKS", default=[])


def _twilio_auth_token() -> str:
    """TWILIO_AUTH_TOKEN, else (not in production) a local one kept in var/: only
    simulate_call can sign with it."""
    if value := env.str("TWILIO_AUTH_TOKEN", default=""):
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(
            "TWILIO_AUTH_TOKEN must be set when PRODUCTION is on: without it no request from "
            "Twilio passes the signature check."
        )
    path = VAR_DIR / "local_twilio_auth_token"
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


TWILIO_AUTH_TOKEN = _twilio_auth_token()
# LLM timings (seconds). Retries and the fallback model all fit inside the webhook deadline.
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=8.0)
LLM_FIRST_TOKEN_TIMEOUT_SECONDS = env.float("LLM_FIRST_TOKEN_TIMEOUT_SECONDS", default=3.5)
LLM_MAX_ATTEMPTS = env.int("LLM_MAX_ATTEMPTS", default=3)
LLM_BACKOFF_SECONDS = env.float("LLM_BACKOFF_SECONDS", default=0.25)
# A caller is waiting: the answer's first token comes within this, over every attempt of both
# models, or the caller hears the apology (the turn's own deadline still applies when sooner).
LLM_FIRST_TOKEN_DEADLINE_SECONDS = env.float("LLM_FIRST_TOKEN_DEADLINE_SECONDS", default=4.0)
# The fallback model is asked beside the main one when the main one has not begun its answer
# this long after the question (or cannot retry before then); the first to answer is used.
LLM_HEDGE_SECONDS = env.float("LLM_HEDGE_SECONDS", default=1.2)
# Model routing: a turn of at most this many words (and no tool named) goes to the assistant's
# fast model, when it has one (calls.routing).
ROUTING_SHORT_WORDS = env.int("ROUTING_SHORT_WORDS", default=12)
# Relay and talk: "one moment" is said when no token came this long after the caller spoke (0: off).
LLM_FILLER_SECONDS = env.float("LLM_FILLER_SECONDS", default=1.5)
# Answers to identical first questions are reused for this long (0 turns the cache off).
ANSWER_CACHE_SECONDS = env.int("ANSWER_CACHE_SECONDS", default=3600)
MAX_UTTERANCE_CHARS = env.int("MAX_UTTERANCE_CHARS", default=2000)
# Twilio waits 15 s for a webhook; we answer well before.
WEBHOOK_DEADLINE_SECONDS = env.float("WEBHOOK_DEADLINE_SECONDS", default=9.0)
# How long a gather reply waits for speech audio after the answer is complete, before <Say>.
TTS_WAIT_SECONDS = env.float("TTS_WAIT_SECONDS", default=2.0)
# Gather: an answer of several sentences is played from its first sentence's audio on, the rest
# fetched by Twilio from a continuation (calls.transports.gather); False waits for all of it.
GATHER_EARLY_REPLY = env.bool("GATHER_EARLY_REPLY", default=True)
# Relay mode (ConversationRelay): how long one streamed answer may take in all, how often the
# dashboard gets the words streamed so far, and the largest WebSocket frame read.
RELAY_ANSWER_SECONDS = env.float("RELAY_ANSWER_SECONDS", default=20.0)
RELAY_PARTIAL_EVENT_SECONDS = env.float("RELAY_PARTIAL_EVENT_SECONDS", default=0.25)
# Relay mode: after the first piece of an answer, the LLM stream is read and its text sent at most
# this often (0: each read as it comes).
RELAY_TEXT_BATCH_MS = env.float("RELAY_TEXT_BATCH_MS", default=40.0)
RELAY_MAX_FRAME_CHARS = env.int("RELAY_MAX_FRAME_CHARS", default=65536)
# Re-prompts when the caller says nothing, before saying goodbye.
MAX_SILENT_PROMPTS = env.int("MAX_SILENT_PROMPTS", default=2)
GTTS_TIMEOUT = env.float("GTTS_TIMEOUT", default=4.0)
# The "simulated" speech engine of benchmarks: cost of one sentence, like a network TTS.
TTS_SIMULATED_BASE_MS = env.float("TTS_SIMULATED_BASE_MS", default=300.0)
TTS_SIMULATED_PER_CHAR_MS = env.float("TTS_SIMULATED_PER_CHAR_MS", default=4.0)
TTS_AUDIO_TTL_HOURS = env.int("TTS_AUDIO_TTL_HOURS", default=24)
# Key for secrets stored in the database (tenants' Twilio auth tokens). Defaults to one derived
# from SECRET_KEY; FIELD_ENCRYPTION_KEY_FALLBACKS keeps old keys readable during a rotation.
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY", default="")
FIELD_ENCRYPTION_KEY_FALLBACKS = env.list("FIELD_ENCRYPTION_KEY_FALLBACKS", default=[])

# Dashboard: a period's figures are served from the cache for ANALYTICS_CACHE_SECONDS (0: always
# recomputed); older ones, up to ANALYTICS_STALE_SECONDS, are served while being recomputed in
# the background. ANALYTICS_WORK_MEM: sort memory of the aggregate queries on PostgreSQL.
ANALYTICS_CACHE_SECONDS = env.int("ANALYTICS_CACHE_SECONDS", default=15)
ANALYTICS_STALE_SECONDS = env.int("ANALYTICS_STALE_SECONDS", default=600)
ANALYTICS_WORK_MEM = env.str("ANALYTICS_WORK_MEM", default="64MB")
# Hourly rollups of those figures, recomputed by a beat task this often (0: none; the dashboard
# then aggregates every call and turn of a period itself).
ANALYTICS_ROLLUP_SECONDS = env.int("ANALYTICS_ROLLUP_SECONDS", default=60)
if ANALYTICS_ROLLUP_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["refresh-analytics-rollups"] = {
        "task": "analytics.tasks.refresh_rollups",
        "schedule": float(ANALYTICS_ROLLUP_SECONDS),
        # A run that waited longer than the interval (worker down) is dropped: the next one
        # catches up anyway.
        "options": {"expires": float(ANALYTICS_ROLLUP_SECONDS)},
    }

# Outbound calls and campaigns: the dialler runs every CAMPAIGN_TICK_SECONDS (a beat task, one
# dialler per tenant), never faster than CAMPAIGN_MAX_CALLS_PER_SECOND per tenant (Twilio's default
# for an account is 1). A call written but not heard of from Twilio after
# CAMPAIGN_DIAL_RECONCILE_SECONDS is looked up at Twilio before it is placed again.
CAMPAIGN_TICK_SECONDS = env.float("CAMPAIGN_TICK_SECONDS", default=5.0)
CAMPAIGN_MAX_CALLS_PER_SECOND = env.float("CAMPAIGN_MAX_CALLS_PER_SECOND", default=1.0)
CAMPAIGN_DIAL_RECONCILE_SECONDS = env.int("CAMPAIGN_DIAL_RECONCILE_SECONDS", default=60)
CAMPAIGN_MAX_CONTACTS = env.int("CAMPAIGN_MAX_CONTACTS", default=50000)
CELERY_BEAT_SCHEDULE["expire-recordings"] = {
    "task": "campaigns.tasks.expire_recordings",
    "schedule": 3600.0,
}
CELERY_BEAT_SCHEDULE["dial-campaigns"] = {
    "task": "campaigns.tasks.dial_campaigns",
    "schedule": CAMPAIGN_TICK_SECONDS,
    "options": {"expires": CAMPAIGN_TICK_SECONDS},
}

# --- Logging: JSON lines, tenant and CallSid attached while a call is handled ----------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "core.logging.ContextFilter"},
        "quiet_tick": {"()": "campaigns.log_filters.QuietTick"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "DEBUG"},
        # httpx logs every request's URL at INFO: a tenant's webhook URL may hold a token.
        "httpx": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "DEBUG"},
        # Celery's lines about the dialler's tick (every CAMPAIGN_TICK_SECONDS) are DEBUG.
        **{
            name: {"filters": ["quiet_tick"]}
            for name in ("celery.beat", "celery.app.trace", "celery.worker.strategy")
        },
    },
}

# --- REST API (/api/v1/) ----------------------------------------------------------------------
# Requests per API key (or signed-in user), e.g. "600/min", "20/s"; empty turns throttling off.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="600/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "tenants.api_base.TenantAutoSchema",
    "EXCEPTION_HANDLER": "tenants.api_base.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice assistant platform API",
    "DESCRIPTION": (
        "Manage a tenant's assistants, FAQ entries and phone numbers; read calls, turns, "
        "analytics and rate limits. Authenticate with `Authorization: Bearer vpk_...` (a tenant "
        "API key) or a browser session. Viewers and read-only keys can read; owners, admins "
        "and read-and-write keys can change. Another tenant's objects answer 404."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "AssistantModeEnum": "assistants.models.AssistantConfig.Mode",
        "CallModeEnum": "calls.models.Call.Mode",
        "CallStatusEnum": "calls.models.Call.Status",
        "CallOutcomeEnum": "calls.models.Call.Outcome",
        "CampaignStatusEnum": "campaigns.models.Campaign.Status",
        "ContactOutcomeEnum": "campaigns.models.Contact.Outcome",
        "RecordingStatusEnum": "campaigns.models.Recording.Status",
        "CallbackStatusEnum": "campaigns.models.ScheduledCallback.Status",
        "ReplayRunStatusEnum": "rehearsals.models.ReplayRun.Status",
        "ReplayCallStatusEnum": "rehearsals.models.ReplayCall.Status",
        "WebhookEventTypeEnum": "webhooks.models.EventType",
        "DeliveryStatusEnum": "webhooks.models.Delivery.Status",
        "AnalysisStatusEnum": "insights.models.CallReport.Analysis",
        "SentimentEnum": "insights.models.Sentiment",
    },
}

# --- After a call: analysis, costs, tenant webhooks (insights/, webhooks/) -------------------
# The model that analyses a finished call (summary, success, sentiment, the tenant's fields) when
# the assistant's analysis plan names none; it must support Groq's structured output.
ANALYSIS_MODEL = env.str("ANALYSIS_MODEL", default="openai/gpt-oss-20b")
ANALYSIS_TIMEOUT_SECONDS = env.float("ANALYSIS_TIMEOUT_SECONDS", default=30.0)
# Longest transcript (characters) sent for analysis; a longer one keeps its beginning and end.
ANALYSIS_MAX_TRANSCRIPT_CHARS = env.int("ANALYSIS_MAX_TRANSCRIPT_CHARS", default=24000)

# --- Rehearsals: replays of recorded calls and test scenarios ---------------------------------
REPLAY_MAX_CALLS = env.int("REPLAY_MAX_CALLS", default=5000)
REPLAY_MAX_CONCURRENCY = env.int("REPLAY_MAX_CONCURRENCY", default=8)
REPLAY_DEFAULT_BUDGET_TOKENS = env.int("REPLAY_DEFAULT_BUDGET_TOKENS", default=2_000_000)
# A replayed call no lane has touched for this long was lost with its worker: it is replayed again.
REPLAY_LOST_LANE_SECONDS = env.float("REPLAY_LOST_LANE_SECONDS", default=600.0)
CELERY_BEAT_SCHEDULE["revive-replays"] = {
    "task": "rehearsals.tasks.revive_replays",
    "schedule": 120.0,
    "options": {"expires": 120.0},
}
SCENARIO_MODEL = env.str("SCENARIO_MODEL", default="llama-3.3-70b-versatile")
SCENARIO_MAX_PER_RUN = env.int("SCENARIO_MAX_PER_RUN", default=50)
# Prices (README, "What a call costs"): LLM per million input/output tokens (Groq's list prices),
# telephony per started minute by call mode (Twilio inbound voice; relay adds ConversationRelay),
# speech per million characters by engine. PRICE_TABLE (JSON) overrides any part of it.
PRICE_CURRENCY = env.str("PRICE_CURRENCY", default="USD")
PRICES = {
    "llm_per_million_tokens": {
        "llama-3.3-70b-versatile": {"input": 0.59, "output": 0.79},
        "llama-3.1-8b-instant": {"input": 0.05, "output": 0.08},
        "openai/gpt-oss-120b": {"input": 0.15, "output": 0.60},
        "openai/gpt-oss-20b": {"input": 0.075, "output": 0.30},
        "meta-llama/llama-4-scout-17b-16e-instruct": {"input": 0.11, "output": 0.34},
        "meta-llama/llama-4-maverick-17b-128e-instruct": {"input": 0.20, "output": 0.60},
        "qwen/qwen3-32b": {"input": 0.29, "output": 0.59},
        "moonshotai/kimi-k2-instruct-0905": {"input": 1.00, "output": 3.00},
    },
    # stream: inbound voice plus Media Streams.
    "telephony_per_minute": {"gather": 0.0085, "relay": 0.0785, "stream": 0.0125, "web": 0},
    "speech_per_million_characters": {"gtts": 0, "espeak": 0, "say": 8.0},
}
for _part, _prices in env.json("PRICE_TABLE", default={}).items():
    PRICES.setdefault(_part, {}).update(_prices)

# Webhooks: each attempt is bounded by WEBHOOK_TIMEOUT_SECONDS; a failed one is tried again after
# the next delay of WEBHOOK_RETRY_SCHEDULE (seconds, each with +/- WEBHOOK_RETRY_JITTER of itself;
# ~24 h in all), then given up (dead letter). An endpoint with WEBHOOK_DISABLE_AFTER deliveries
# given up in a row is switched off and its tenant's owners and admins are told by email.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_RETRY_SCHEDULE = [
    float(delay)
    for delay in env.list(
        "WEBHOOK_RETRY_SCHEDULE",
        default=["5", "30", "120", "600", "1800", "3600", "7200", "14400", "28800", "28800"],
    )
]
WEBHOOK_RETRY_JITTER = env.float("WEBHOOK_RETRY_JITTER", default=0.2)
WEBHOOK_DISABLE_AFTER = env.int("WEBHOOK_DISABLE_AFTER", default=5)
# How long a rotated-out secret keeps signing beside the new one.
WEBHOOK_SECRET_OVERLAP_HOURS = env.float("WEBHOOK_SECRET_OVERLAP_HOURS", default=24.0)
# Deliveries whose queued task was lost (a worker killed, a broker restart) are queued again.
WEBHOOK_SWEEP_SECONDS = env.float("WEBHOOK_SWEEP_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["requeue-webhook-deliveries"] = {
    "task": "webhooks.tasks.requeue_due_deliveries",
    "schedule": WEBHOOK_SWEEP_SECONDS,
    "options": {"expires": WEBHOOK_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE["requeue-call-analyses"] = {
    "task": "insights.tasks.requeue_pending_analyses",
    "schedule": 300.0,
    "options": {"expires": 300.0},
}


# Languages. The platform's own lines are translated into PHRASE_LANGUAGES (locale/<code>/
# LC_MESSAGES/django.po, compiled .mo committed beside them); `manage.py check_translations` fails
# when a line lacks one. A caller's language is detected from turns of at least
# LANGUAGE_DETECTION_MIN_WORDS words whose detected language reaches
# LANGUAGE_DETECTION_MIN_CONFIDENCE (0-1), or from an explicit ask ("¿habla español?").
LOCALE_PATHS = [BASE_DIR / "locale"]
PHRASE_LANGUAGES = ["en", "es", "fr", "de", "pt", "it", "hi", "ja"]
LANGUAGE_DETECTION_MIN_WORDS = env.int("LANGUAGE_DETECTION_MIN_WORDS", default=3)
LANGUAGE_DETECTION_MIN_CONFIDENCE = env.float("LANGUAGE_DETECTION_MIN_CONFIDENCE", default=0.8)
# lingua's small models: under 20 MB for all eight languages instead of ~170-195 MB (~90-120 MB
# for two), but overconfident on short mixed turns (bench/language_detection.py).
LANGUAGE_DETECTION_LOW_ACCURACY = env.bool("LANGUAGE_DETECTION_LOW_ACCURACY", default=False)
# Load the detector's models when a web process starts, instead of at its first call of a
# multilingual assistant (lingua holds the GIL while loading: that call's process stalls). On
# by default in production, where no live call should wait for it.
LANGUAGE_DETECTION_PRELOAD = env.bool("LANGUAGE_DETECTION_PRELOAD", default=PRODUCTION)

# --- Stream mode (Twilio Media Streams: our own recognition and speech providers) -------------
DEEPGRAM_API_KEY = env.str("DEEPGRAM_API_KEY", default="")
DEEPGRAM_BASE_URL = env.str("DEEPGRAM_BASE_URL", default="wss://api.deepgram.com")
ASSEMBLYAI_API_KEY = env.str("ASSEMBLYAI_API_KEY", default="")
ASSEMBLYAI_BASE_URL = env.str("ASSEMBLYAI_BASE_URL", default="wss://streaming.assemblyai.com")
# Connecting to a provider, and a provider's silence while it owes us something, past this fail.
STREAM_PROVIDER_TIMEOUT_SECONDS = env.float("STREAM_PROVIDER_TIMEOUT_SECONDS", default=3.0)
# Audio sent to Twilio ahead of real time (a cushion against jitter; `clear` drops it on barge-in).
STREAM_AUDIO_LEAD_MS = env.int("STREAM_AUDIO_LEAD_MS", default=100)
# The assistant's audio goes to Twilio in `media` messages this long (whole 20 ms frames).
STREAM_MEDIA_MESSAGE_MS = env.int("STREAM_MEDIA_MESSAGE_MS", default=100)
# Caller speech (our own voice-activity detector) that interrupts the assistant.
STREAM_BARGE_IN_MS = env.int("STREAM_BARGE_IN_MS", default=160)
# Caller audio goes to the recognition provider in chunks this long (Deepgram: 20-100 ms).
STREAM_RECOGNITION_CHUNK_MS = env.int("STREAM_RECOGNITION_CHUNK_MS", default=40)
# The caller's voice may wait for chunks this long (the silence that ends a turn goes at once).
STREAM_RECOGNITION_VOICE_CHUNK_MS = env.int("STREAM_RECOGNITION_VOICE_CHUNK_MS", default=100)
# While nobody has spoken for a while, the chunks grow to this (the first voiced frame sends them).
STREAM_RECOGNITION_QUIET_CHUNK_MS = env.int("STREAM_RECOGNITION_QUIET_CHUNK_MS", default=200)
# After the caller stops talking, how long the recognition provider has to end the turn.
STREAM_RECOGNITION_TIMEOUT_SECONDS = env.float("STREAM_RECOGNITION_TIMEOUT_SECONDS", default=4.0)
# Largest Media Streams frame read (a 20 ms media frame is ~400 characters).
STREAM_MAX_FRAME_CHARS = env.int("STREAM_MAX_FRAME_CHARS", default=16384)

# --- Tools and the knowledge base --------------------------------------------------------------
# A tool still running after this long gets the caller a short "one moment while I check".
TOOL_FILLER_SECONDS = env.float("TOOL_FILLER_SECONDS", default=1.5)
# At most this many rounds of tool calls in one turn (then the caller gets an answer anyway).
TOOL_MAX_ROUNDS = env.int("TOOL_MAX_ROUNDS", default=3)
# Of a turn's deadline, what is kept for the model's answer after its tools have run.
TOOL_ANSWER_RESERVE_SECONDS = env.float("TOOL_ANSWER_RESERVE_SECONDS", default=1.5)
# Passages ranked at least this high go into the prompt (when switched on): PostgreSQL's ts_rank
# (0.04 when two of a question's three words are found once); on SQLite, the share of words found.
KNOWLEDGE_PROMPT_MIN_RANK = env.float("KNOWLEDGE_PROMPT_MIN_RANK", default=0.03)
