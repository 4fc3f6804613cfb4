from django.urls import path

from calls.transports import gather, webhooks

urlpatterns = [
    path("twilio/voice", webhooks.voice, name="twilio-voice"),
    path("twilio/gather", gather.gather, name="twilio-gather"),
    path("twilio/gather-continue", gather.gather_continue, name="twilio-gather-continue"),
    path("twilio/status", webhooks.status, name="twilio-status"),
    path("twilio/relay-action", webhooks.relay_action, name="twilio-relay-action"),
    path("twilio/stream-action", webhooks.stream_action, name="twilio-stream-action"),
    path("twilio/fallback", webhooks.fallback, name="twilio-fallback"),
]
