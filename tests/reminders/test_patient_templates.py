"""A patient email's templates are rendered once per shape (centre, purpose, language) and filled in per email: the
text and HTML are those of a full rendering, whatever the values."""

from __future__ import annotations

import pytest

from surveillance.reminders import messages


def context(n: int, **changes) -> dict:
    """A patient email's context, its values numbered ``n`` (links and dates that need escaping in HTML too)."""
    values = {
        "purpose": "upcoming",
        "centre": "Centre A & B",
        "centre_phone": "+1 617 555 0100",
        "centre_address": ["450 Brookline Avenue", "Boston, MA 02215"],
        "centre_hours": "Mon-Fri <8-17>",
        "due_date": f"Saturday, November {n}, 2026",
        "booked_for": "",
        "window_start": f"Friday, October {n}, 2026",
        "window_end": f"Sunday, December {n}, 2026",
        "confirm_url": f"https://x.org/r/c{n}/?a=1&b='2'",
        "reschedule_url": f"https://x.org/r/r{n}/",
        "done_elsewhere_url": f"https://x.org/r/d{n}/",
        "unsubscribe_url": f"https://x.org/unsubscribe/u{n}/",
    }
    return values | changes


@pytest.fixture(autouse=True)
def _no_shapes_yet(monkeypatch):
    monkeypatch.setattr(messages, "_shapes", {})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"booked_for": "Monday, November 9, 2026"},
        {"purpose": "cancelled", "confirm_url": "", "reschedule_url": "", "done_elsewhere_url": ""},
        {"purpose": "moved", "centre_phone": "", "centre_hours": ""},
    ],
)
@pytest.mark.parametrize("language", ["en", "es"])
def test_it_fills_each_email_into_its_shape_as_a_full_rendering(language, changes):
    for n in (1, 2, 3):  # the first email renders the shape; the next ones are filled into it
        full = messages._render("patient", language, context(n, **changes))
        assert messages._render_patient(language, context(n, **changes)) == full
    assert len(messages._shapes) == 1 and None not in messages._shapes.values()


def test_it_renders_in_full_a_shape_the_templates_show_more_of(monkeypatch):
    monkeypatch.setattr(messages, "SHAPE", ("purpose", "centre", "centre_address", "centre_hours"))  # not the phone
    for n, phone in enumerate(("+1 617 555 0100", "+1 617 555 0199"), start=1):
        values = context(n, centre_phone=phone)
        assert messages._render_patient("en", values) == messages._render("patient", "en", values)
    assert list(messages._shapes.values()) == [None]


def test_it_renders_in_full_a_shape_that_holds_the_marker_character_itself():
    for n in (1, 2):
        values = context(n, centre="Centre \ue000 A")  # one marker: every piece after it shifts
        assert messages._render_patient("en", values) == messages._render("patient", "en", values)
    assert list(messages._shapes.values()) == [None]
