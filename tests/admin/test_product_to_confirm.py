"""Infusions imported without their product: listed for physicians, who name the product through the re-plan page
(the diff first, then a confirmed re-plan)."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from surveillance.care import planning
from surveillance.models import AuditEntry, CarTProduct, Infusion


def bare_infusion(make_patient, centre, today) -> Infusion:
    patient = make_patient(centre, birth_date=dt.date(1970, 5, 17))
    infusion = Infusion.objects.create(patient=patient, product=None, infusion_date=today - dt.timedelta(days=40))
    planning.infusion_plan(infusion)
    infusion.refresh_from_db()
    return infusion


def test_it_lists_infusions_whose_product_is_to_confirm(login, physician_a, physician_b, make_patient, centre_a, today):
    infusion = bare_infusion(make_patient, centre_a, today)
    url = reverse("admin:surveillance_infusion_changelist") + "?worklist=product"
    mine = login(physician_a).get(url)
    assert [row.pk for row in mine.context["cl"].result_list] == [infusion.pk]
    assert b"Name the product" in mine.content
    assert list(login(physician_b).get(url).context["cl"].result_list) == []


def test_it_names_the_product_with_a_previewed_and_confirmed_replan(login, physician_a, make_patient, centre_a, today):
    infusion = bare_infusion(make_patient, centre_a, today)
    assert infusion.protocol.variant == "intensified"
    client = login(physician_a)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    data = {
        "infusion_date": infusion.infusion_date.isoformat(),
        "flag_present": "1",
        "reason": "Pharmacy",
        "preview": "1",
    }
    unnamed = client.post(url, data)
    assert "Name the product" in unnamed.content.decode()
    preview = client.post(url, {**data, "product": "kymriah"})
    diff = preview.context["diff"]
    assert diff.protocol_to.startswith("standard") and diff.removed
    assert Infusion.objects.get(pk=infusion.pk).product is None  # nothing written before the confirmation
    confirm = client.post(url, {**data, "product": "kymriah", "confirm": "1", "fingerprint": diff.fingerprint()})
    assert confirm.status_code == 302
    infusion.refresh_from_db()
    assert (infusion.product, infusion.protocol.variant) == (CarTProduct.objects.get(code="kymriah"), "standard")
    entry = AuditEntry.objects.get(action="change", object_type="infusion", object_id=str(infusion.pk))
    assert entry.changes["product"] == [None, "kymriah"]
