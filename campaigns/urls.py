from django.urls import path

from campaigns import webhooks

urlpatterns = [
    path("twilio/outbound/voice", webhooks.voice, name="twilio-outbound-voice"),
    path("twilio/outbound/status", webhooks.status, name="twilio-outbound-status"),
    path("twilio/outbound/amd", webhooks.amd, name="twilio-outbound-amd"),
    path("twilio/outbound/recording", webhooks.recording, name="twilio-outbound-recording"),
    path("twilio/recording", webhooks.call_recording, name="twilio-recording"),
]
