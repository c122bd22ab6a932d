"""The same unambiguous dates as in English ("3 Mar 2026", the month in Spanish) and 24-hour times with the zone.

Input formats put ISO first, as in English: date fields are ``<input type="date">``, which shows and sends
2026-03-03 whatever the language, and a widget renders its value in the first input format (Django's Spanish
default, 03/03/2026, would leave the browser's date field empty). Typed day-first dates are still accepted."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i T"
TIME_FORMAT = "H:i T"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
DATE_INPUT_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%d/%m/%y"]
DATETIME_INPUT_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"]
