"""A bare WSGI callable: the floor of gunicorn and loopback, served beside the API in ``bench.api_load``."""

BODY = b'{"ok": true}'


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
