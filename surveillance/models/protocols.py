"""Versioned surveillance protocols. A protocol is data: once active it never changes; a change is a new version."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.scheduling import engine, protocol_file
from surveillance.seeds.labels import choice_label


class ProtocolStatus(models.TextChoices):
    DRAFT = "draft", choice_label("protocol.draft")
    ACTIVE = "active", choice_label("protocol.active")
    RETIRED = "retired", choice_label("protocol.retired")


class Variant(models.TextChoices):
    STANDARD = "standard", _("Standard")
    INTENSIFIED = "intensified", _("Risk-intensified")


class ProtocolQuerySet(models.QuerySet):
    def current(self, code: str) -> Protocol:
        """The newest active version of a protocol family: what a new infusion is assigned."""
        return self.filter(code=code, status=ProtocolStatus.ACTIVE).latest("version")


class Protocol(models.Model):
    code = models.SlugField(max_length=32)
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    variant = models.CharField(max_length=16, choices=Variant.choices)
    description = models.TextField(blank=True)
    source = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=ProtocolStatus.choices, default=ProtocolStatus.DRAFT)
    content_hash = models.CharField(max_length=64, help_text=_("SHA-256 of the loaded definition."))
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    objects = ProtocolQuerySet.as_manager()

    class Meta:
        ordering = ["code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="protocol_version_unique"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="protocol_version_positive"),
            models.CheckConstraint(condition=models.Q(variant__in=Variant.values), name="protocol_variant_valid"),
            models.CheckConstraint(
                condition=models.Q(status=ProtocolStatus.DRAFT) | models.Q(activated_at__isnull=False),
                name="protocol_activation_dated",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        if self.pk and self.status != ProtocolStatus.DRAFT:
            stored = Protocol.objects.filter(pk=self.pk).values("status", "content_hash").first()
            if stored and stored["status"] != ProtocolStatus.DRAFT and stored["content_hash"] != self.content_hash:
                raise ValidationError("An active protocol is immutable: load a new version instead.")
        super().save(*args, **kwargs)

    def to_spec(self) -> engine.ProtocolSpec:
        """The engine's view of this protocol (pure data, no database)."""
        return protocol_file.protocol_from_dict(self.as_definition())

    def as_definition(self) -> dict:
        """The protocol in the seed-file format (the engine parses one shape, whatever its origin)."""
        return {
            "code": self.code,
            "version": self.version,
            "name": self.name,
            "variant": self.variant,
            "rules": [rule.as_definition() for rule in self.rules.all()],
        }


def choices_of(
    enum: type[engine.LabelledEnum], *, catalogued: bool = False, labels: dict[str, str] | None = None
) -> type[models.TextChoices]:
    """The model choices of one of the engine's enums: the same members and values; the labels defined there, or
    those of ``labels`` (by value), or, ``catalogued``, read from the labels catalogue in the reader's language (the
    same English)."""

    def label_of(member) -> str:
        if catalogued:
            return choice_label(member.value)
        return (labels or {}).get(member.value, member.label)

    return models.TextChoices(enum.__name__, [(member.name, (member.value, label_of(member))) for member in enum])


#: The engine's offset units (English there: the engine is pure) in the reader's language.
OffsetUnit = choices_of(engine.OffsetUnit, labels={"day": _("Days"), "month": _("Months"), "year": _("Years")})
VisitKind = choices_of(engine.VisitKind, catalogued=True)


class ProtocolRule(models.Model):
    """One line of a protocol: when a visit falls (offset, repetition, window), what it asks for, for whom."""

    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveSmallIntegerField()
    code = models.CharField(max_length=32)
    label = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=VisitKind.choices)
    offset_amount = models.IntegerField()
    offset_unit = models.CharField(max_length=5, choices=OffsetUnit.choices)
    repeat_every = models.PositiveSmallIntegerField(null=True, blank=True)
    repeat_until = models.IntegerField(null=True, blank=True, help_text=_("Last offset (same unit), inclusive."))
    lifelong = models.BooleanField(default=False)
    window_before_days = models.PositiveSmallIntegerField()
    window_after_days = models.PositiveSmallIntegerField()
    assessments = models.JSONField(default=list)
    applies_to = models.JSONField(default=dict, blank=True)
    condition = models.CharField(max_length=32, blank=True)
    reminders = models.JSONField(default=dict, blank=True)
    source = models.TextField()

    class Meta:
        ordering = ["protocol", "position"]
        constraints = [
            models.UniqueConstraint(fields=["protocol", "code"], name="protocol_rule_code_unique"),
            models.CheckConstraint(condition=models.Q(offset_unit__in=OffsetUnit.values), name="rule_unit_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=VisitKind.values), name="rule_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(repeat_every__isnull=True)
                | models.Q(repeat_every__gt=0, lifelong=True)
                | models.Q(repeat_every__gt=0, repeat_until__gte=models.F("offset_amount")),
                name="rule_repeat_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.protocol} {self.code}"

    def as_definition(self) -> dict:
        """The rule in the seed-file format."""
        repeat = None
        if self.repeat_every:
            repeat = {"every": self.repeat_every}
            repeat.update({"lifelong": True} if self.lifelong else {"until": self.repeat_until})
        return {
            "code": self.code,
            "label": self.label,
            "kind": self.kind,
            "offset": {"amount": self.offset_amount, "unit": self.offset_unit},
            "repeat": repeat,
            "window": {"before": self.window_before_days, "after": self.window_after_days},
            "assessments": self.assessments,
            "applies_to": self.applies_to,
            "condition": self.condition or None,
            "reminders": self.reminders or None,
            "source": self.source,
        }
