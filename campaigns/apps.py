from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from calls.signals import call_started, caller_spoke
        from campaigns import callbacks, phrases
        from campaigns.receivers import (
            note_stop_request,
            record_answered_call,
            unwire_removed_number,
        )
        from core.phrases import register
        from tenants.models import PhoneNumber
        from tools import builtins

        register(vars(phrases))
        builtins.register(callbacks.TOOL)

        caller_spoke.connect(note_stop_request, dispatch_uid="campaigns.note_stop_request")
        call_started.connect(record_answered_call, dispatch_uid="campaigns.record_answered_call")
        post_delete.connect(
            unwire_removed_number, sender=PhoneNumber, dispatch_uid="campaigns.unwire_number"
        )
