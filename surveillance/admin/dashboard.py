"""The cohort dashboard: pictures first (server-rendered SVG, numbers on hover and in the tables beside)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import formats
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.admin.display import date_text
from surveillance.admin.worklists import workspace_today
from surveillance.care import cohort
from surveillance.models import TreatmentCentre
from surveillance.models.patients import LadderStage, PatientStatus
from surveillance.models.reminders import ReminderStatus
from surveillance.models.signals import SignalReviewStatus

BAR_H, GAP = 18, 6


def hbar_chart(
    items: list[tuple[str, float, str]], max_value: float, width: int = 560, label_w: int = 215, suffix: str = ""
) -> dict:
    """Horizontal bars: ``items`` are (label, value, hover text); the value is written beside each bar."""
    plot = width - label_w - 60
    bars = []
    for i, (label, value, title) in enumerate(items):
        y = i * (BAR_H + GAP)
        w = 0 if not max_value else round(plot * value / max_value, 1)
        bars.append(
            {
                "y": y,
                "ty": y + BAR_H - 5,
                "w": w,
                "label": label,
                "title": title,
                "vx": label_w + w + 4,
                "value_label": f"{value:g}{suffix}",
            }
        )
    return {"width": width, "height": max(len(items), 1) * (BAR_H + GAP), "label_w": label_w, "bars": bars}


def vbar_chart(items: list[tuple[str, int, str]], width: int = 520, height: int = 180) -> dict:
    """Vertical bars with a label under each: ``items`` are (label, value, hover text)."""
    top, bottom, left = 16, 22, 8
    plot_h = height - top - bottom
    step = (width - left) / max(len(items), 1)
    peak = max((v for _, v, _ in items), default=0) or 1
    bars = []
    for i, (label, value, title) in enumerate(items):
        h = round(plot_h * value / peak, 1)
        x = round(left + i * step + 3, 1)
        bars.append(
            {
                "x": x,
                "y": top + plot_h - h,
                "w": round(step - 6, 1),
                "h": h,
                "label": label,
                "value": value,
                "title": title,
                "cx": round(x + (step - 6) / 2, 1),
                "vy": top + plot_h - h - 3,
                "ly": height - 6,
            }
        )
    return {"width": width, "height": height, "bars": bars, "base_y": top + plot_h}


def incidence_chart(inc: cohort.Incidence, width: int = 640, height: int = 260) -> dict:
    """The cumulative incidence (Aalen-Johansen, death competing) as a step line, the published references dashed."""
    left, right, top, bottom = 44, 16, 12, 30
    max_months = max(60, min(int(inc.max_months) + 1, 180))
    peak = max([15.0, *(p for _, p in inc.steps), *(p for _, pts in cohort.REFERENCE_LINES for _, p in pts)])
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(month: float) -> float:
        return round(left + plot_w * min(month, max_months) / max_months, 1)

    def y(pct: float) -> float:
        return round(top + plot_h * (1 - pct / peak), 1)

    points = [(0.0, 0.0)]
    for month, pct in inc.steps:
        if month > max_months:
            break
        points.append((month, points[-1][1]))
        points.append((month, pct))
    end = min(inc.max_months, max_months)
    points.append((end, points[-1][1]))
    path = "M" + " L".join(f"{x(mth)},{y(pct)}" for mth, pct in points)
    steps = [
        {"cx": x(mth), "cy": y(pct), "title": _("%(pct).1f%% by month %(month).1f") % {"pct": pct, "month": mth}}
        for mth, pct in inc.steps
        if mth <= max_months
    ]
    references = []
    for label, pts in cohort.REFERENCE_LINES:
        references.append(
            {
                "label": label,
                "path": "M" + " L".join(f"{x(mth)},{y(pct)}" for mth, pct in pts),
                "points": [
                    {
                        "cx": x(mth),
                        "cy": y(pct),
                        "title": _("%(label)s: %(pct)s%% at %(months)s months")
                        % {"label": label, "pct": pct, "months": mth},
                    }
                    for mth, pct in pts[1:]
                ],
            }
        )
    x_ticks = [{"x": x(mth), "label": f"{mth // 12}y" if mth else "0"} for mth in range(0, max_months + 1, 12)]
    y_ticks = [{"y": y(p), "label": f"{p}%"} for p in range(0, int(peak) + 1, 5)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "base_y": top + plot_h,
        "top": top,
        "path": path,
        "steps": steps,
        "references": references,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "label_y": height - 8,
    }


def dashboard_context(request) -> dict:
    centre_ids = user_centre_ids(request.user)
    centres = list(scope(TreatmentCentre.objects.all(), request.user, ""))
    selected = request.GET.get("centre")
    if selected and selected.isdigit() and int(selected) in {c.pk for c in centres}:
        centre_ids = [int(selected)]
    else:
        selected = ""
    today = workspace_today(request)
    figures = cohort.cohort_figures(centre_ids, today)
    adherence = hbar_chart(
        [
            (
                f"{a.rule_code} {a.label}"[:34],
                round(100 * a.share, 1),
                _("%(label)s: %(done)d of %(settled)d completed within the window (%(share).1f%%)")
                % {"label": a.label, "done": a.in_window, "settled": a.settled, "share": 100 * a.share},
            )
            for a in figures.adherence
        ],
        100,
        suffix="%",
    )
    workload = vbar_chart(
        [
            (
                formats.date_format(w.week_start, "d M"),
                w.visits,
                _("Week of %(week)s: %(count)d visits") % {"week": date_text(w.week_start), "count": w.visits},
            )
            for w in figures.workload
        ]
    )
    status_items = [
        (PatientStatus(s).label, n, f"{PatientStatus(s).label}: {n}")
        for s, n in ((s, figures.patients_by_status.get(s, 0)) for s in PatientStatus.values)
    ]
    ladder = [
        (
            _("Active, %(stage)s") % {"stage": str(LadderStage(s).label).lower()},
            figures.patients_by_status.get(f"ladder:{s}", 0),
        )
        for s in (LadderStage.OVERDUE, LadderStage.TRACING, LadderStage.LOST)
    ]
    statuses = hbar_chart(status_items, max((n for _label, n, _hover in status_items), default=0))
    outcome_items = [
        (
            ReminderStatus(s).label,
            figures.reminder_outcomes.get(s, 0),
            f"{ReminderStatus(s).label}: {figures.reminder_outcomes.get(s, 0)}",
        )
        for s in ReminderStatus.values
    ]
    outcomes = hbar_chart(outcome_items, max((n for _label, n, _hover in outcome_items), default=0))
    return {
        "today": today,
        "centres": centres,
        "selected_centre": selected,
        "figures": figures,
        "adherence_chart": adherence,
        "workload_chart": workload,
        "status_chart": statuses,
        "ladder": ladder,
        "outcome_chart": outcomes,
        "review_statuses": SignalReviewStatus.choices,
        "incidence_chart": incidence_chart(figures.incidence),
        "incidence": figures.incidence,
        "references": cohort.REFERENCE_LINES,
        "scoped_centre_ids": centre_ids,
    }


def dashboard_view(admin_site, request):
    if not request.user.has_perm("surveillance.view_patient"):
        raise PermissionDenied
    context = {**admin_site.each_context(request), "title": _("Cohort dashboard"), **dashboard_context(request)}
    audit_record(request, "dashboard", object_type="cohort", changes={"centres": context["scoped_centre_ids"]})
    return TemplateResponse(request, "surveillance/admin/dashboard.html", context)
