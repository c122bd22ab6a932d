"""The audit trail: who viewed or changed what, when, from where. Written with the change, never edited."""

from __future__ import annotations

import contextvars

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

#: The client address of the request being served, set by ``surveillance.access.audit.AuditMiddleware``, so that rows
#: written deep in a flow (lifecycle, planning, reporting) still say where the change came from.
request_remote_addr: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_remote_addr", default=None)
#: Who is acting when it is not a user row (an API token, an import): rows written with no actor meanwhile carry it.
request_actor_label: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_actor_label", default=None)


class AuditActor(models.TextChoices):
    """Who acted, by kind: the one vocabulary of audit actors (``surveillance.access.audit.audit_actor_label``).

    A staff user's entry names the user row and carries no label; every other entry carries the kind's value,
    followed by ``:<name>`` where the kind has names (an API token's).
    """

    STAFF = "staff", _("Staff user")
    API_TOKEN = "token", _("API token")
    EHR_IMPORT = "ehr-import", _("EHR import")
    SYSTEM = "system", _("System task")
    PATIENT_LINK = "patient-link", _("Patient link")
    PATIENT_SMS = "patient-sms", _("Patient SMS reply")
    PROVIDER = "provider", _("Messaging provider callback")
    ANONYMOUS = "anonymous", _("Anonymous")


class AppendOnlyError(ValueError):
    """An attempt to rewrite or remove an audit entry."""


class AuditEntryQuerySet(models.QuerySet):
    """Refuses bulk rewrites and removals, which skip ``save()`` and ``delete()`` and their guards."""

    def update(self, **kwargs):
        raise AppendOnlyError("audit entries are append-only: a queryset of them cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit entries are append-only: a queryset of them cannot be deleted")


class AuditEntry(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    actor_label = models.CharField(max_length=128, blank=True, help_text=_("System task or API token name."))
    action = models.CharField(max_length=32)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    patient_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = _("audit entries")

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs) -> None:
        # Append-only: a stored entry is never rewritten. The queryset refuses bulk changes, and on PostgreSQL a
        # trigger (migration 0003) refuses UPDATE and DELETE from any client, raw SQL included.
        if not self._state.adding:
            raise AppendOnlyError("audit entries are append-only")
        self.request_context_fill()
        super().save(*args, **kwargs)

    def request_context_fill(self) -> None:
        """Take the client address and the API caller's label from the request being served, unless given.

        ``save()`` calls it; code that writes entries as rows in bulk (which skips ``save()``) calls it itself."""
        if self.remote_addr is None:
            self.remote_addr = request_remote_addr.get()
        if self.actor_id is None and request_actor_label.get():
            self.actor_label = request_actor_label.get()

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit entries are append-only")
