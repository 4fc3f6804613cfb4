from django.apps import AppConfig


class TenantsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tenants"

    def ready(self) -> None:
        from tenants import (
            directory,
            signals,  # noqa: F401  (receivers: access changes reach open sockets)
        )
        from tenants.generations import invalidate_on_change
        from tenants.models import PhoneNumber, RateLimit, Tenant

        invalidate_on_change(RateLimit)  # a call's limits are kept per process (effective_limits)
        for model in (PhoneNumber, Tenant):  # the dialled numbers are kept per process
            directory.invalidate_on_change(model)
