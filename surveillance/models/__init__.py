"""The surveillance domain, one concept a module."""

from surveillance.models.audit import AuditEntry
from surveillance.models.centres import CentreClosure, CentreMembership, Role, TreatmentCentre
from surveillance.models.ehr_pull import EhrConnection, EhrPullRun, PullStatus, SigningAlgorithm
from surveillance.models.events import MalignancyEvent, MalignancyType, ReportingStep, TransgeneStatus
from surveillance.models.identity import IdentityReview, IdentityReviewStatus
from surveillance.models.imports import ImportFormat, ImportJob, ImportJobPatient, ImportJobStatus
from surveillance.models.integrations import (
    ApiToken,
    IdempotencyKey,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookStatus,
)
from surveillance.models.patients import (
    ContactAttempt,
    Infusion,
    LadderStage,
    Patient,
    PatientStatus,
    RiskFlag,
)
from surveillance.models.products import CarTProduct, ProductCode
from surveillance.models.protocols import Protocol, ProtocolRule, ProtocolStatus
from surveillance.models.reminders import (
    Audience,
    Channel,
    Delivery,
    LetterTask,
    PreparedMessage,
    Reminder,
    ReminderStatus,
)
from surveillance.models.results import ResultOutcome, ResultSource, VisitResult
from surveillance.models.signals import Signal, SignalReview, SignalReviewStatus, SignalRuleSet, WorkupItem
from surveillance.models.staff import StaffPreference
from surveillance.models.visits import (
    ConditionDecision,
    FollowUpVisit,
    PatientRequest,
    VisitChange,
    VisitStatus,
)

__all__ = [
    "ApiToken",
    "Audience",
    "AuditEntry",
    "CarTProduct",
    "CentreClosure",
    "CentreMembership",
    "Channel",
    "ConditionDecision",
    "ContactAttempt",
    "Delivery",
    "EhrConnection",
    "EhrPullRun",
    "FollowUpVisit",
    "IdempotencyKey",
    "IdentityReview",
    "IdentityReviewStatus",
    "ImportFormat",
    "ImportJob",
    "ImportJobPatient",
    "ImportJobStatus",
    "Infusion",
    "LadderStage",
    "LetterTask",
    "MalignancyEvent",
    "MalignancyType",
    "Patient",
    "PatientRequest",
    "PatientStatus",
    "PreparedMessage",
    "ProductCode",
    "Protocol",
    "ProtocolRule",
    "ProtocolStatus",
    "PullStatus",
    "Reminder",
    "ReminderStatus",
    "ReportingStep",
    "ResultOutcome",
    "ResultSource",
    "RiskFlag",
    "Role",
    "Signal",
    "SignalReview",
    "SignalReviewStatus",
    "SignalRuleSet",
    "SigningAlgorithm",
    "StaffPreference",
    "TransgeneStatus",
    "TreatmentCentre",
    "VisitChange",
    "VisitResult",
    "VisitStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookStatus",
    "WorkupItem",
]
