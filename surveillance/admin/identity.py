"""The identity review worklist: imported Patients refused because their identity is in doubt.

A coordinator compares the record as sent with the stored patient it would have been merged into, and links it
to that patient, creates a new patient from it, or rejects it (``identity.identity_review_resolve``); each decision
is audited. Only the coordinator's own centres' reviews are listed.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.admin.base import CentreScopedAdmin
from surveillance.admin.worklists import WorklistFilter
from surveillance.imports.identity import ReviewClosed, identity_review_resolve
from surveillance.models import IdentityReview, IdentityReviewStatus, Patient

DECISIONS = [(status, label) for status, label in IdentityReviewStatus.choices if status != IdentityReviewStatus.OPEN]


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    mrn = forms.CharField(
        max_length=Patient._meta.get_field("mrn").max_length,
        required=False,
        label="MRN of the new patient",
        help_text="Only to create a new patient: the record's own MRN is the other patient's.",
    )

    def __init__(self, *args, review: IdentityReview, **kwargs):
        super().__init__(*args, **kwargs)
        self.review = review

    def clean(self):
        data = super().clean()
        if data.get("decision") == IdentityReviewStatus.CREATED:
            mrn = (data.get("mrn") or "").strip()
            if not mrn:
                self.add_error("mrn", "A new patient needs an MRN.")
            elif Patient.objects.filter(centre=self.review.centre, mrn=mrn).exists():
                self.add_error("mrn", "Another patient of the centre has this MRN.")
            data["mrn"] = mrn
        return data


@admin.register(IdentityReview)
class IdentityReviewAdmin(CentreScopedAdmin):
    patient_path = "patient"
    list_display = ("__str__", "decide", "reason", "status", "created_at")
    list_filter = (WorklistFilter, "status")
    list_select_related = ("patient",)
    readonly_fields = [field.name for field in IdentityReview._meta.fields]

    def has_add_permission(self, request):
        return False  # reviews come from imports

    def has_delete_permission(self, request, obj=None):
        return False  # a decision is kept, with who made it

    @admin.display(description=_("Review"))
    def decide(self, obj: IdentityReview) -> str:
        url = reverse("admin:surveillance_identityreview_decide", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, "Decide" if obj.status == IdentityReviewStatus.OPEN else "See")

    def get_urls(self):
        view = self.admin_site.admin_view(lambda request, object_id: identity_review_view(self, request, object_id))
        return [path("<path:object_id>/decide/", view, name="surveillance_identityreview_decide"), *super().get_urls()]


def identity_review_view(model_admin: IdentityReviewAdmin, request, object_id):
    review = get_object_or_404(
        model_admin.get_queryset(request).select_related("patient", "centre", "resolved_by"), pk=object_id
    )
    can_decide = (
        request.user.has_perm("surveillance.change_identityreview") and review.status == IdentityReviewStatus.OPEN
    )
    form = DecisionForm(request.POST or None, review=review)
    if request.method == "POST":
        if not can_decide:
            raise PermissionDenied
        if form.is_valid():
            decision = form.cleaned_data["decision"]
            try:
                patient = identity_review_resolve(review, decision, by=request.user, mrn=form.cleaned_data["mrn"])
            except ReviewClosed:
                model_admin.message_user(request, "This review was decided meanwhile.", messages.WARNING)
            else:
                audit_record(
                    request,
                    "identity_review",
                    object_type="identityreview",
                    object_id=review.pk,
                    patient_id=patient.pk if patient else review.patient_id,
                    changes={"decision": decision, "patient": patient.pk if patient else None},
                )
                model_admin.message_user(request, f"{review}: decided.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:surveillance_identityreview_changelist"))
    else:
        audit_record(request, "view", object_type="identityreview", object_id=review.pk, patient_id=review.patient_id)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Identity review {review.pk}",
        "opts": model_admin.model._meta,
        "review": review,
        "stored": review.patient,
        "form": form,
        "can_decide": can_decide,
    }
    return TemplateResponse(
        request, "surveillance/admin/identity_review.html", context, status=400 if form.is_bound else 200
    )
