"""ASGI entry point: HTTP through Django, websockets through Channels routing."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

from core.asgi import SyncRequestHandler  # noqa: E402

django_asgi_app = SyncRequestHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls import languages  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from core.load import LoadSampled  # noqa: E402
from providers import llm  # noqa: E402

application = LoadSampled(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)

# The garbage collector, tuned for a process holding many live calls. What is loaded by now
# lives as long as the process: it is frozen out of the collector's passes. Young objects are
# collected every GC_THRESHOLDS[0] allocations instead of Python's 700, so that the objects of
# answers in flight are not promoted to the old generation, whose full passes stop every call
# of the process for a fifth of a second (docs/benchmarks.md, capacity).
from django.conf import settings  # noqa: E402

if settings.LANGUAGE_DETECTION_PRELOAD:
    languages.preload()  # before the freeze: the models live as long as the process
# The LLM provider and its SDK are imported now, not during the first caller's answer (a few
# hundred milliseconds of imports), and frozen with the rest.
llm.get_provider()
gc.freeze()
gc.set_threshold(*settings.GC_THRESHOLDS)
