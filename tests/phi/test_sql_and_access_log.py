"""No patient data where the service logs below its own code: Django's SQL logger, whatever level it is set to,
and the web server's access log (query strings and referers carry searches by name and MRN)."""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request

import pytest

from surveillance.models import Patient
from tests.phi.sentinel import BIRTH, EMAIL, FAMILY, GIVEN, MRN, SENTINELS
from tests.ports import free_port
from tests.test_deployment import compose_config, compose_secret, compose_web, production_web  # noqa: F401


@pytest.mark.django_db
def test_it_never_logs_sql_and_its_parameters_even_at_debug_level(caplog):
    from django.db import connection

    caplog.set_level(logging.DEBUG)  # as DJANGO_LOG_LEVEL=DEBUG would
    caplog.set_level(logging.DEBUG, logger="django")  # and someone debugging Django itself
    connection.force_debug_cursor = True  # as DJANGO_DEBUG would
    try:
        Patient.objects.filter(family_name=FAMILY).exists()
    finally:
        connection.force_debug_cursor = False
    assert not [record for record in caplog.records if FAMILY in record.getMessage()]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_it_keeps_query_strings_and_referers_out_of_the_web_servers_access_log(compose_web, tmp_path):  # noqa: F811
    """The real gunicorn command of the compose file, on loopback: searches by name and MRN leave no trace."""
    port = free_port()
    log = tmp_path / "web.log"
    opener = urllib.request.build_opener(NoRedirect)  # production redirects to HTTPS: the 301 is logged all the same
    with production_web(compose_web, port, log):
        base = f"http://127.0.0.1:{port}"
        referer = {"Referer": f"{base}/admin/surveillance/patient/?q={FAMILY}"}
        for path in (
            f"/health/live?mrn={MRN}",
            f"/api/v1/patients?mrn={MRN}&email={EMAIL}",
            f"/admin/surveillance/patient/?q={GIVEN}+{FAMILY}&birth_date={BIRTH}",
        ):
            request = urllib.request.Request(base + path, headers={**referer, "Host": "127.0.0.1"})
            with contextlib.suppress(urllib.error.HTTPError):
                opener.open(request, timeout=10)
    text = log.read_text()
    assert '"GET /health/live HTTP/1.1" 200' in text, text[-2000:]  # the access log was written
    assert '"GET /api/v1/patients HTTP/1.1"' in text
    assert not [s for s in SENTINELS if s.lower() in text.lower()], text[-2000:]
