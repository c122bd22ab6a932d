"""One unambiguous date format for staff on both sides of the Atlantic ("3 Mar 2026": neither 03/03 nor 3/3 can be
misread), and times on the 24-hour clock with the zone's abbreviation, since a centre's staff and its patients
may be in different zones. Input formats stay Django's (ISO first), so forms and tests keep typing 2026-03-03."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i T"
TIME_FORMAT = "H:i T"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
