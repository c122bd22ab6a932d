"""Protocol upgrade in the admin: preview a new version against the centre's cohort, then a physician applies it."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import request_remote_addr
from surveillance.access.tenancy import user_centre_ids
from surveillance.admin.patient_page import diff_summary
from surveillance.care import planning
from surveillance.care.protocol_upgrade import (
    protocol_upgrade_apply,
    protocol_upgrade_candidates,
    protocol_upgrade_preview,
    protocol_upgrade_targets,
)

APPLY_PERMISSION = "surveillance.change_protocol"


def protocol_upgrade_list_view(admin_site, request):
    """Every version some of the centre's infusions could move to, with how many infusions are on older ones."""
    if not request.user.has_perm("surveillance.view_protocol"):
        raise PermissionDenied
    centre_ids = user_centre_ids(request.user)
    targets = []
    for protocol in protocol_upgrade_targets():
        count = protocol_upgrade_candidates(protocol, centre_ids).count()
        if count:
            targets.append((protocol, count))
    context = {**admin_site.each_context(request), "title": _("Protocol upgrades"), "targets": targets}
    return TemplateResponse(request, "surveillance/admin/protocol_upgrade_list.html", context)


def protocol_upgrade_view(admin_site, request, protocol_id):
    """GET: the preview. POST (physicians): apply exactly the previewed change, or show the new preview."""
    if not request.user.has_perm("surveillance.view_protocol"):
        raise PermissionDenied
    protocol = get_object_or_404(protocol_upgrade_targets(), pk=protocol_id)
    centre_ids = user_centre_ids(request.user)
    can_apply = request.user.has_perm(APPLY_PERMISSION)
    notice = None
    if request.method == "POST":
        if not can_apply:
            raise PermissionDenied
        try:
            applied = protocol_upgrade_apply(
                protocol,
                by=request.user,
                centre_ids=centre_ids,
                confirm=request.POST.get("fingerprint", ""),
                remote_addr=request_remote_addr(request),
            )
        except planning.PlanChanged:
            notice = gettext("The cohort changed since the preview: check the new figures and apply again.")
        else:
            done = gettext(
                "%(protocol)s applied: %(patients)d patients (%(infusions)d infusions): %(added)d visits added, "
                "%(moved)d moved, %(removed)d removed, %(changed)d changed."
            )
            messages.success(
                request,
                done
                % {
                    "protocol": protocol,
                    "patients": applied.patients,
                    "infusions": applied.infusions,
                    "added": applied.added,
                    "moved": applied.moved,
                    "removed": applied.removed,
                    "changed": applied.changed,
                },
            )
            return HttpResponseRedirect(reverse("admin:protocol_upgrade_list"))
    preview = protocol_upgrade_preview(protocol, centre_ids)
    context = {
        **admin_site.each_context(request),
        "title": gettext("Upgrade to %(protocol)s") % {"protocol": protocol},
        "protocol": protocol,
        "preview": preview,
        "changed_diffs": [
            {"infusion_id": d.infusion_id, "summary": diff_summary(d)}
            for d in preview.diffs
            if d.added or d.moved or d.removed or d.changed
        ][:50],
        "can_apply": can_apply,
        "notice": notice,
    }
    return TemplateResponse(request, "surveillance/admin/protocol_upgrade.html", context, status=409 if notice else 200)
