"""Staff roles as Django groups: what a coordinator, a physician and an auditor may do in the admin.

Which patients they see is a separate matter, decided by their centre memberships (``tenancy``).
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

from surveillance.models import Role

_ALL = (
    "treatmentcentre",
    "centremembership",
    "cartproduct",
    "productcode",
    "patient",
    "infusion",
    "riskflag",
    "contactattempt",
    "protocol",
    "protocolrule",
    "followupvisit",
    "visitchange",
    "conditiondecision",
    "patientrequest",
    "reminder",
    "delivery",
    "lettertask",
    "malignancyevent",
    "reportingstep",
    "signalreview",
    "signal",
    "signalruleset",
    "identityreview",
)
#: Coordinators work the lists, record visits, contact patients and decide who an imported patient is.
_COORDINATOR_CHANGES = (
    "patient",
    "followupvisit",
    "contactattempt",
    "patientrequest",
    "lettertask",
    "identityreview",
)
#: Physicians also record results and malignancy events, decide second-cancer signal reviews, change risk flags and
#: infusion dates (with a confirmed re-plan), and sign off protocol upgrades (``change_protocol``).
_PHYSICIAN_CHANGES = (
    *_COORDINATOR_CHANGES,
    "infusion",
    "riskflag",
    "conditiondecision",
    "malignancyevent",
    "reportingstep",
    "signalreview",
    "protocol",
)

ROLE_PERMISSIONS: dict[str, set[str]] = {
    Role.COORDINATOR: {f"view_{m}" for m in _ALL}
    | {f"change_{m}" for m in _COORDINATOR_CHANGES}
    | {"add_contactattempt"},
    Role.PHYSICIAN: {f"view_{m}" for m in _ALL}
    | {f"change_{m}" for m in _PHYSICIAN_CHANGES}
    | {"add_contactattempt", "add_riskflag", "add_malignancyevent", "add_conditiondecision", "add_infusion"},
    # Read-only: every list and page, and the audit trail; no change of any kind.
    Role.AUDITOR: {f"view_{m}" for m in _ALL} | {"view_auditentry"},
}


def roles_sync() -> dict[str, Group]:
    """Create or update one group per role with exactly its permissions."""
    groups = {}
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="surveillance", codename__in=codenames))
        groups[role] = group
    return groups
