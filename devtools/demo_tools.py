"""The demo tenant's booking tool: a small endpoint of the platform's own (mounted only with
DEVTOOLS), answering tool requests as a tenant's server would. It checks the request's signature
the way the README tells tenants to, with the Standard Webhooks library."""

from __future__ import annotations

import hashlib
import json
import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_scopes import scopes_disabled
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tools.models import HttpTool

logger = logging.getLogger(__name__)

DEMO_TENANT = "demo"
BOOKING_TOOL = "book_appointment"


def demo_booking_secret() -> str:
    """The signing secret of the demo tenant's booking tool ("" if it does not exist)."""
    with scopes_disabled():
        tool = HttpTool.objects.filter(tenant__slug=DEMO_TENANT, name=BOOKING_TOOL).first()
    return tool.get_signing_secret() if tool is not None else ""


@csrf_exempt
@require_POST
def demo_booking(request: HttpRequest) -> JsonResponse:
    """Book the service on the day the model asked for (nothing is stored: it is a demo)."""
    secret = demo_booking_secret()
    try:
        Webhook(secret).verify(request.body, dict(request.headers))
    except (WebhookVerificationError, ValueError) as exc:
        logger.warning("demo booking: refused an unsigned request", extra={"error": str(exc)})
        return JsonResponse({"error": "invalid signature"}, status=401)
    arguments = json.loads(request.body).get("arguments", {})
    service = str(arguments.get("service", "appointment"))[:60]
    day = str(arguments.get("day", "tomorrow"))[:30]
    reference = hashlib.sha256(request.body).hexdigest()[:4].upper()
    return JsonResponse(
        {
            "message": f"You're booked in for a {service} on {day.title()} at 10 a.m. "
            f"Your reference is D-{reference}."
        }
    )
