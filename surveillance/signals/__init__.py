"""Second-cancer signals: rules over EHR blood results and diagnoses, recorded for a physician's review."""
