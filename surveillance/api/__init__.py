"""The REST API (v1) for EHR integrations."""

#: Where the API is served (``config/urls.py``): the middleware that treat API requests apart know them by it.
PREFIX = "/api/"
