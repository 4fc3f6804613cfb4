from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from calls.signals import caller_spoke
        from campaigns.receivers import note_stop_request

        caller_spoke.connect(note_stop_request, dispatch_uid="campaigns.note_stop_request")
