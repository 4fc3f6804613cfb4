"""Changes to what a user may see reach their open sockets (the dashboard feed, the talk page).

These receivers make every open socket of a user check its access again when a membership, the
user (active, staff, superuser), their groups or permissions, or a tenant's active flag change,
and close when its session logs out.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from tenants.access import access_changed
from tenants.models import Membership, Tenant

User = get_user_model()


@receiver([post_save, post_delete], sender=Membership, dispatch_uid="access_membership")
def _membership_changed(sender, instance: Membership, **kwargs) -> None:
    access_changed([instance.user_id])


@receiver(post_save, sender=User, dispatch_uid="access_user_saved")
def _user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # a new user has no socket yet; signing in changes nothing they may see
    access_changed([instance.pk])


@receiver(post_delete, sender=User, dispatch_uid="access_user_deleted")
def _user_deleted(sender, instance, **kwargs) -> None:
    access_changed([instance.pk])


@receiver(m2m_changed, sender=User.groups.through, dispatch_uid="access_user_groups")
@receiver(m2m_changed, sender=User.user_permissions.through, dispatch_uid="access_user_perms")
def _user_rights_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """A user's groups or permissions changed (from either side of the relation)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        access_changed([instance.pk])
    elif action == "pre_clear":  # a group or permission loses all its users: note them first
        access_changed(_users_of(instance))
    else:
        access_changed(pk_set or ())


@receiver(m2m_changed, sender=Group.permissions.through, dispatch_uid="access_group_perms")
def _group_rights_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        group_ids = [instance.pk]
    elif action == "pre_clear":  # a permission taken from every group: note them first
        group_ids = list(Group.objects.filter(permissions=instance).values_list("pk", flat=True))
    else:
        group_ids = list(pk_set or ())
    access_changed(User.objects.filter(groups__in=group_ids).values_list("pk", flat=True))


@receiver(post_save, sender=Tenant, dispatch_uid="access_tenant_saved")
def _tenant_saved(sender, instance: Tenant, created: bool, **kwargs) -> None:
    if not created:  # e.g. switched off: its members may no longer watch it
        access_changed(instance.memberships.values_list("user_id", flat=True))


@receiver(user_logged_out, dispatch_uid="access_logged_out")
def _logged_out(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if user is not None and session is not None and session.session_key:
        access_changed([user.pk], ended_session=session.session_key)


def _users_of(instance) -> list:
    """Users of a Group, or holding a Permission directly."""
    if isinstance(instance, Group):
        return list(instance.user_set.values_list("pk", flat=True))
    return list(User.objects.filter(user_permissions=instance).values_list("pk", flat=True))
