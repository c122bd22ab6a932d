"""The answer to recording an infusion names the protocol its schedule was planned with."""

from __future__ import annotations

import datetime as dt

from surveillance.models import Infusion


def test_it_answers_the_planned_protocol(api_a, centre_a, make_patient):
    patient = make_patient(centre_a, birth_date=dt.date(1980, 1, 1))
    day = dt.date.today() - dt.timedelta(days=10)
    response = api_a.post(
        "/api/v1/infusions",
        {"patient": patient.pk, "product": "kymriah", "infusion_date": day.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.content
    infusion = Infusion.objects.select_related("protocol").get(pk=response.json()["id"])
    assert response.json()["protocol"] == str(infusion.protocol) == "standard v2"
    assert api_a.get(f"/api/v1/infusions/{infusion.pk}").json()["protocol"] == "standard v2"
