"""The catalogue of CAR-T products and the codes an EHR uses for them."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class TargetAntigen(models.TextChoices):
    CD19 = "CD19", _("CD19")
    BCMA = "BCMA", _("BCMA")


class VectorType(models.TextChoices):
    LENTIVIRAL = "lentiviral", _("Lentiviral")
    GAMMARETROVIRAL = "gammaretroviral", _("Gammaretroviral")


class CarTProduct(models.Model):
    """An approved CAR-T product: its target and vector decide which rules and assessments apply."""

    code = models.SlugField(max_length=32, unique=True)
    brand = models.CharField(max_length=64, unique=True)
    generic_name = models.CharField(max_length=128)
    abbreviation = models.CharField(max_length=32, blank=True)
    manufacturer = models.CharField(max_length=128)
    target_antigen = models.CharField(max_length=8, choices=TargetAntigen.choices)
    vector_type = models.CharField(max_length=16, choices=VectorType.choices)
    costimulation = models.CharField(max_length=32, blank=True)
    approved_on = models.DateField(null=True, blank=True)
    rems_status = models.CharField(max_length=64, blank=True)
    boxed_warning_secondary_malignancy = models.BooleanField(default=True)
    safety_contact_phone = models.CharField(max_length=32, blank=True)
    safety_contact_url = models.URLField(blank=True)
    safety_contact_note = models.CharField(max_length=255, blank=True)
    source = models.TextField(blank=True)

    class Meta:
        ordering = ["brand"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(target_antigen__in=TargetAntigen.values), name="product_target_valid"
            ),
            models.CheckConstraint(condition=models.Q(vector_type__in=VectorType.values), name="product_vector_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.brand} ({self.generic_name})"


class ProductCode(models.Model):
    """One coding of a product (RxNorm, NDC, HCPCS, ICD-10-PCS) used to recognise CAR-T in EHR exports."""

    product = models.ForeignKey(CarTProduct, on_delete=models.CASCADE, related_name="codes", null=True, blank=True)
    system = models.CharField(max_length=128)
    code = models.CharField(max_length=32)
    display = models.CharField(max_length=255, blank=True)
    marks_infusion = models.BooleanField(default=True, help_text=_("False for harvest or preparation steps."))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "code"], name="product_code_unique")]

    def __str__(self) -> str:
        return f"{self.system}|{self.code}"
