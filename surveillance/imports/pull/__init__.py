"""Pulling from an EHR: FHIR Bulk Data ``$export`` authorised with SMART Backend Services.

``smart_auth`` signs the client assertion and keeps the access token; ``http`` sends one request with retries;
``bulk_client`` speaks the Bulk Data protocol (kick-off, status, manifest, files); ``runs`` claims a connection's
run, drives it and imports its files through the NDJSON entry point; ``health`` says which connections are behind.
"""
