"""Call recordings, of every call whose assistant records them: started with the call (inbound:
`<Start><Recording>` in the answer's TwiML; outbound: `Record=true` when the call is placed),
noted when Twilio's recording status callback says one is ready, fetched into the platform's
media storage (and deleted at Twilio, which bills storage by the month), deleted here after the
retention period: the assistant's own, else its tenant's."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from calls.models import Call
from campaigns import services, twilio_calls
from campaigns.models import Recording

logger = logging.getLogger(__name__)


# Where Twilio tells the platform that an inbound call's recording is ready (the call's id in
# the query); named in the call's config snapshot, which the answer's TwiML follows.
CALLBACK_PATH = "/twilio/recording"


def retention_days(*, call: Call) -> int:
    """How long the call's recordings are kept: its assistant's period, else its tenant's."""
    own = services.recording_settings_for(assistant_id=call.assistant_id).retention_days
    return own or call.tenant.recording_retention_days


def recording_start_inbound(*, call: Call) -> bool:
    """An inbound phone call just answered: when its assistant records calls, mark its config
    snapshot so that the answer starts a recording (and announces it, if it should). Runs
    inside the call's creation (the `call_started` signal); returns whether it is recorded."""
    if call.direction == "outbound" or call.phone_number_id is None or call.assistant_id is None:
        return False
    settings = services.recording_settings_for(
        assistant_id=call.assistant_id, tenant=call.tenant_if_read()
    )
    if not settings.record_calls:
        return False
    config = call.config_snapshot
    if settings.announce_recording:
        services.announce_recording(config)
    config["recording_callback_path"] = f"{CALLBACK_PATH}?{urlencode({'call': call.id})}"
    Call.objects.filter(pk=call.pk).update(config_snapshot=config)
    return True


def recording_note(
    *, call: Call, recording_sid: str, url: str, duration: int | None
) -> Recording | None:
    """Twilio's recording status callback said a recording is ready: note it (once per sid)."""
    if not recording_sid.startswith("RE") or len(recording_sid) > 64 or len(url) > 500:
        return None
    days = retention_days(call=call)
    try:
        with transaction.atomic():
            return Recording.objects.create(
                tenant_id=call.tenant_id,
                call_id=call.id,
                recording_sid=recording_sid,
                source_url=url,
                duration_seconds=duration,
                delete_after=timezone.now() + timedelta(days=days),
            )
    except IntegrityError:
        return None


def recording_fetch(*, recording: Recording) -> Recording:
    """Copy the recording's file into media storage, then delete it at Twilio."""
    if recording.status != Recording.Status.PENDING:
        return recording
    tenant = recording.call.tenant
    try:
        audio = twilio_calls.recording_download(tenant=tenant, url=recording.source_url)
    except twilio_calls.TwilioUnavailable as exc:
        recording.status, recording.error = Recording.Status.FAILED, str(exc)[:500]
        recording.save(update_fields=["status", "error"])
        return recording
    name = default_storage.save(
        f"recordings/{recording.tenant_id}/{secrets.token_urlsafe(24)}.mp3", ContentFile(audio)
    )
    recording.file, recording.status = name, Recording.Status.STORED
    recording.save(update_fields=["file", "status"])
    try:
        twilio_calls.recording_delete(tenant=tenant, recording_sid=recording.recording_sid)
    except twilio_calls.TwilioUnavailable:
        logger.warning("recording kept at Twilio: it could not be deleted there", exc_info=True)
    return recording


def recording_url(recording: Recording, *, base_url: str = "") -> str:
    """The stored file's address: the storage's own when absolute (an object store), else
    `base_url` + its path; "" when there is no file."""
    if not recording.file:
        return ""
    url = default_storage.url(recording.file)
    if url.startswith(("http://", "https://", "//")):
        return url
    return base_url.rstrip("/") + url


def call_recordings(*, call) -> list[dict]:
    """The stored recordings of a call the viewer may see (checked by the caller), for its page:
    each file's path and length."""
    with scope(tenant=call.tenant_id):
        rows = list(
            Recording.objects.filter(
                tenant_id=call.tenant_id, call=call, status=Recording.Status.STORED
            )
        )
    return [{"url": recording_url(r), "duration": r.duration_seconds} for r in rows]


def recordings_expire() -> int:
    """Delete every tenant's recordings past their retention; returns how many."""
    with scopes_disabled():  # a housekeeping pass over every tenant
        due = Recording.objects.filter(delete_after__lte=timezone.now()).exclude(
            status=Recording.Status.DELETED
        )
        deleted = 0
        for recording in due:
            if recording.file:
                default_storage.delete(recording.file)
            recording.file, recording.status = "", Recording.Status.DELETED
            recording.save(update_fields=["file", "status"])
            deleted += 1
    return deleted
