"""Date and time formats of the clinician admin (``FORMAT_MODULE_PATH``): one date format on every page."""
