"""The letter channel: a reminder for a patient no message reaches becomes a task on the coordinators' worklist,
"Letters and calls to make", with a printable letter made from the same data as the email.

Handing a letter reminder over creates its task; the task's unique key (visit x purpose x sequence) makes a
visit's second reminder, or a re-send after a crash, find the task already there instead of adding another.
Marking the task done records the contact attempt (``letter_task_done``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from surveillance.models import ContactAttempt, LetterTask, Reminder
from surveillance.models.patients import ContactMethod
from surveillance.reminders import messages


class LetterTaskAlreadyDone(Exception):
    """A task can be marked done once."""


class LetterTransport:
    """The dispatcher's letter channel: nothing leaves the building, so it is never unreachable."""

    unreachable = "letter worklist unavailable"
    lost = "letter worklist unavailable"
    accepted_code = None
    timeout = 5

    def open(self) -> None:
        """Nothing to connect to."""

    def build(self, reminder: Reminder, now: dt.datetime) -> Any:
        return None

    def ready(self) -> bool:
        return True

    def send(self, reminder: Reminder, payload: Any, settle: Callable[[], None]) -> str:
        settle()
        return f"letter-task-{letter_task_open(reminder).pk}"

    def close(self) -> None:
        """Nothing to let go of."""


def letter_task_open(reminder: Reminder) -> LetterTask:
    """The reminder's task on the worklist: created, or the one its visit already has for the same notice."""
    key = {"visit_id": reminder.visit_id, "purpose": reminder.purpose, "sequence": reminder.sequence}
    task = LetterTask.objects.filter(**key).first()
    if task is not None:
        return task
    try:
        with transaction.atomic():
            return LetterTask.objects.create(reminder=reminder, **key)
    except IntegrityError:  # another dispatcher created it meanwhile
        return LetterTask.objects.get(**key)


def letter_render(task: LetterTask, today: dt.date, back_url: str) -> str:
    """The printable letter of a task: the email's data (``messages.patient_context``) on the centre's letterhead,
    addressed to the patient by name, in the patient's language. For staff only: it is printed and posted."""
    reminder = task.reminder
    patient = reminder.visit.infusion.patient
    language = messages.patient_language(patient)
    context = {
        **messages.patient_context(reminder),
        "patient_name": f"{patient.given_name} {patient.family_name}".strip(),
        "today": messages.long_date(today, language),
        "back_url": back_url,
    }
    return render_to_string(f"surveillance/letters/letter.{language}.html", context)


def letter_task_done(task: LetterTask, *, by, method: str, reached: bool, note: str = "") -> ContactAttempt:
    """Record the letter sent or the call made: the contact attempt, and the task off the worklist. A task done
    by someone else meanwhile (two coordinators on one list) raises ``LetterTaskAlreadyDone``."""
    if method not in (ContactMethod.LETTER, ContactMethod.PHONE):
        raise ValueError(f"not a letter or a call: {method}")
    now = timezone.now()
    if not note:
        with translation.override("en"):  # stored, as the service's other words are, in English
            note = f"{ContactMethod(method).label} for the {task.get_purpose_display().lower()} notice"
    with transaction.atomic():
        attempt = ContactAttempt.objects.create(
            patient_id=task.visit.infusion.patient_id,
            attempted_at=now,
            method=method,
            reached=reached,
            note=note[:500],
            by=by,
        )
        won = LetterTask.objects.filter(pk=task.pk, done_at__isnull=True).update(
            done_at=now, done_by=by, contact_attempt=attempt
        )
        if not won:
            raise LetterTaskAlreadyDone(f"letter task {task.pk} is already done")
    return attempt
