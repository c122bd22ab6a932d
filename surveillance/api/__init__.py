"""The REST API (v1) for EHR integrations."""
