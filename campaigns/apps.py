from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

        from calls.signals import call_started, caller_spoke
        from campaigns import callbacks, phrases
        from campaigns.models import RecordingSettings
        from campaigns.receivers import (
            note_number_account,
            note_stop_request,
            note_tenant_active,
            record_answered_call,
            unwire_removed_number,
            wire_numbers_of_switched_tenant,
        )
        from core.phrases import register
        from tenants.generations import invalidate_on_change
        from tenants.models import PhoneNumber, Tenant
        from tools import builtins

        register(vars(phrases))
        builtins.register(callbacks.TOOL)

        caller_spoke.connect(note_stop_request, dispatch_uid="campaigns.note_stop_request")
        call_started.connect(record_answered_call, dispatch_uid="campaigns.record_answered_call")
        pre_delete.connect(
            note_number_account, sender=PhoneNumber, dispatch_uid="campaigns.number_account"
        )
        post_delete.connect(
            unwire_removed_number, sender=PhoneNumber, dispatch_uid="campaigns.unwire_number"
        )
        pre_save.connect(note_tenant_active, sender=Tenant, dispatch_uid="campaigns.was_active")
        invalidate_on_change(RecordingSettings)  # a new call's settings are kept per process
        post_save.connect(
            wire_numbers_of_switched_tenant, sender=Tenant, dispatch_uid="campaigns.tenant_switch"
        )
