"""The dialler: calls the due contacts of a tenant's running campaigns, inside their limits.

One dialler per tenant at a time (a lock in the cache, renewed while it works), run by a Celery task that beat starts
every CAMPAIGN_TICK_SECONDS. Each contact is claimed with a row lock that skips rows another
transaction holds, and the claim commits with the Call it is about to place, before Twilio is
asked: a dialler that dies at any point leaves either an unclaimed contact or a written call,
never a contact called twice. Calls written but never placed (the dialler died before Twilio
answered) are found after CAMPAIGN_DIAL_RECONCILE_SECONDS and placed again only if Twilio
lists no such call.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_scopes import scopes_disabled

from calls import services as call_services
from calls.models import Call
from campaigns import services, twilio_calls, windows
from campaigns.models import Campaign, Contact, OutboundCall, OutboundSettings
from tenants.models import RateLimit, Tenant
from tenants.ratelimits import effective_limits

logger = logging.getLogger(__name__)
IDLE_POLL_SECONDS = 0.1
LOCK_SECONDS = 15
# How often a dialler reads its tenant's running campaigns again (a campaign started meanwhile
# is dialled from then on; a pause or cancel stops the claims at once).
CAMPAIGNS_READ_SECONDS = 0.5


def unscoped_tenants_dialling() -> list[str]:
    """Ids of the tenants with a running campaign (every tenant's: the beat task's fan-out)."""
    with scopes_disabled():
        rows = Campaign.objects.filter(status=Campaign.Status.RUNNING, tenant__active=True)
        return [str(t) for t in rows.order_by().values_list("tenant_id", flat=True).distinct()]


class _TenantLock:
    """One dialler per tenant, across workers: a key in the shared cache that its holder
    renews before each call it places. A dialler that dies lets it lapse after LOCK_SECONDS,
    longer than any one step of a live dialler (a Twilio request times out sooner)."""

    def __init__(self, tenant_id: object) -> None:
        self.key, self.token = f"campaigns:dialler:{tenant_id}", uuid.uuid4().hex

    def acquire(self) -> bool:
        return cache.add(self.key, self.token, timeout=LOCK_SECONDS)

    def renew(self) -> bool:
        """Whether the lock is still this dialler's (then held LOCK_SECONDS more)."""
        if cache.get(self.key) != self.token:
            return False
        return cache.touch(self.key, timeout=LOCK_SECONDS)

    def release(self) -> None:
        if cache.get(self.key) == self.token:
            cache.delete(self.key)


def campaigns_dial(*, tenant: Tenant, seconds: float) -> int:
    """Dial the tenant's due contacts for up to `seconds`; returns the calls placed. Does
    nothing when another dialler holds the tenant."""
    lock = _TenantLock(tenant.id)
    if not lock.acquire():
        return 0
    try:
        _reconcile(tenant)
        return _Dialler(tenant, seconds, lock).run()
    finally:
        lock.release()


class _Dialler:
    def __init__(self, tenant: Tenant, seconds: float, lock: _TenantLock) -> None:
        self.tenant = tenant
        self.lock = lock
        self.deadline = time.monotonic() + seconds
        self.pace_key = f"campaigns:next-dial:{tenant.id}"
        limit = effective_limits(tenant).get(RateLimit.Kind.CONCURRENT_CALLS)
        self.tenant_limit = limit.limit if limit else None
        self.settings: dict[object, OutboundSettings] = {}
        self._campaigns: list[Campaign] = []
        self._campaigns_read_at = float("-inf")

    def _running(self) -> list[Campaign]:
        if time.monotonic() - self._campaigns_read_at >= CAMPAIGNS_READ_SECONDS:
            self._campaigns = list(
                Campaign.objects.filter(tenant=self.tenant, status=Campaign.Status.RUNNING)
                .select_related("tenant", "assistant", "phone_number")
                .order_by("created_at")
            )
            self._campaigns_read_at = time.monotonic()
        return self._campaigns

    def run(self) -> int:
        placed = 0
        while time.monotonic() < self.deadline and self.lock.renew():
            campaigns = self._running()
            if not campaigns:
                break
            progress = [self._dial_one(campaign) for campaign in campaigns]
            placed += sum(1 for result in progress if result == "placed")
            if "placed" not in progress and "claimed" not in progress:
                if all(result == "idle" for result in progress):
                    break
                time.sleep(IDLE_POLL_SECONDS)  # lines are busy: wait for one to free up
        return placed

    def _dial_one(self, campaign: Campaign) -> str:
        """One step for one campaign: "placed", "claimed" (a contact was skipped or moved to its
        window), "full" (no free line), "idle" (nothing due)."""
        if not self._line_free(campaign):
            return "full"
        self._wait_for_pace()
        outbound, moved = self._claim(campaign)
        if outbound is None:
            if not moved:
                services.campaign_finish_if_done(campaign=campaign)
            return "claimed" if moved else "idle"
        if campaign.assistant_id not in self.settings:
            self.settings[campaign.assistant_id] = services.outbound_settings_for(
                assistant_id=campaign.assistant_id
            )
        try:
            services.outbound_dial(outbound=outbound, settings=self.settings[campaign.assistant_id])
        except services.OutboundError as exc:
            logger.warning("campaign call not placed: %s", exc)
            outbound.call.refresh_from_db()
            services.contact_settle(outbound=outbound, call=outbound.call)
        self._paced(campaign)
        return "placed"

    def _line_free(self, campaign: Campaign) -> bool:
        dialling = campaign.contacts.filter(state=Contact.State.DIALLING).count()
        if dialling >= campaign.max_concurrent:
            return False
        if self.tenant_limit is None:
            return True
        active = Call.objects.filter(tenant=self.tenant, status__in=Call.ACTIVE_STATUSES).count()
        return active < self.tenant_limit

    def _interval(self, campaign: Campaign) -> float:
        rate = min(campaign.calls_per_second, settings.CAMPAIGN_MAX_CALLS_PER_SECOND)
        return 1.0 / rate

    def _wait_for_pace(self) -> None:
        next_at = cache.get(self.pace_key) or 0.0
        if (wait := next_at - time.time()) > 0:
            time.sleep(wait)

    def _paced(self, campaign: Campaign) -> None:
        cache.set(self.pace_key, time.time() + self._interval(campaign), timeout=60)

    def _claim(self, campaign: Campaign) -> tuple[OutboundCall | None, bool]:
        """Claim the next due contact and write its call. (call, False); (None, True) when the
        contact was instead skipped (do-not-call) or moved to its window; (None, False) when
        none is due."""
        now = timezone.now()
        with transaction.atomic():
            contact = (
                Contact.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    campaign=campaign,
                    campaign__status=Campaign.Status.RUNNING,  # a pause counts at once
                    tenant=self.tenant,
                    state=Contact.State.PENDING,
                    next_attempt_at__lte=now,
                )
                .order_by("next_attempt_at", "id")
                .first()
            )
            if contact is None:
                return None, False
            if services.dnc_contains(tenant=self.tenant, number=contact.number):
                contact.state, contact.outcome = Contact.State.DONE, Contact.Outcome.DO_NOT_CALL
                contact.next_attempt_at = None
                contact.save(update_fields=["state", "outcome", "next_attempt_at", "updated_at"])
                return None, True
            if not windows.in_window(campaign, contact.timezone, now):
                contact.next_attempt_at = windows.next_opening(campaign, contact.timezone, now)
                contact.save(update_fields=["next_attempt_at", "updated_at"])
                return None, True
            outbound = services.outbound_prepare(
                tenant=self.tenant,
                assistant=campaign.assistant,
                phone_number=campaign.phone_number,
                to=contact.number,
                variables=contact.variables,
                contact=contact,
            )
            contact.state = Contact.State.DIALLING
            contact.attempts += 1
            contact.last_call = outbound.call
            contact.save(update_fields=["state", "attempts", "last_call", "updated_at"])
        return outbound, False


def _reconcile(tenant: Tenant) -> None:
    """Contacts whose call was written but never heard of from Twilio: the dialler stopped
    between writing it and Twilio's answer. Adopt the call if Twilio placed it; otherwise
    close it as never placed and give the contact its attempt back. Contacts whose call was
    closed without a final callback (the platform's stale-call sweep) are settled."""
    closed = OutboundCall.objects.filter(
        tenant=tenant,
        contact__state=Contact.State.DIALLING,
        contact__last_call=F("call"),
        call__status__in=Call.FINAL_STATUSES,
    ).select_related("call")
    for outbound in closed:
        services.contact_settle(outbound=outbound, call=outbound.call)
    cutoff = timezone.now() - timedelta(seconds=settings.CAMPAIGN_DIAL_RECONCILE_SECONDS)
    stuck = OutboundCall.objects.filter(
        tenant=tenant,
        contact__state=Contact.State.DIALLING,
        placed_at__isnull=True,
        created_at__lt=cutoff,
        call__call_sid__startswith=services.PLACEHOLDER_SID_PREFIX,
    ).select_related("call", "contact")
    for outbound in stuck:
        call = outbound.call
        try:
            sid = twilio_calls.call_sid_placed(
                tenant=tenant, to=call.to_number, from_=call.from_number, since=call.started_at
            )
        except twilio_calls.TwilioUnavailable:
            logger.warning("cannot reconcile an unplaced call yet", exc_info=True)
            continue
        if sid:
            services.outbound_adopt_sid(outbound=outbound, call_sid=sid)
            continue
        with transaction.atomic():
            contact = Contact.objects.select_for_update().get(pk=outbound.contact_id)
            if contact.state != Contact.State.DIALLING or contact.last_call_id != call.id:
                continue
            contact.state = Contact.State.PENDING
            contact.attempts = max(contact.attempts - 1, 0)
            contact.next_attempt_at = timezone.now()
            contact.save(update_fields=["state", "attempts", "next_attempt_at", "updated_at"])
        call_services.call_status_update(
            call=call, status=Call.Status.FAILED, sequence=None, duration=0
        )
        call_services.call_set_outcome(
            call=call, outcome=Call.Outcome.FAILED, error="never placed: the dialler stopped"
        )
