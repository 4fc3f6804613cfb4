from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from tenants.generations import invalidate_on_change
        from webhooks import receivers
        from webhooks.models import Endpoint

        receivers.connect()
        invalidate_on_change(Endpoint)  # a new call's endpoints are kept per process
