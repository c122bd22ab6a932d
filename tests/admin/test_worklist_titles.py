"""A worklist page is titled by the worklist's name, says in one line what it is for, and offers a print view."""

from __future__ import annotations

import pytest
from django.urls import reverse

from surveillance.admin.worklists import WORKLISTS

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("worklist", WORKLISTS, ids=lambda w: w.key)
def test_it_titles_each_worklist_by_its_name_and_purpose(login, physician_a, worklist):
    response = login(physician_a).get(worklist.url())
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["title"] == worklist.label
    assert f"<h1>{worklist.label}</h1>" in body
    assert f'<p class="cw-purpose">{worklist.help}</p>' in body
    assert "to change" not in body.split("<body", 1)[0]  # not in the browser tab's title either
    assert "data-print" in body and "cw-worklist" in body


def test_it_keeps_the_plain_title_on_a_list_without_a_worklist(login, coordinator_a):
    response = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist"))
    assert response.context["title"] == "Select follow-up visit to change"
    assert b"cw-purpose" not in response.content


def test_it_links_the_print_script_and_the_print_stylesheet(login, coordinator_a):
    worklist = next(w for w in WORKLISTS if w.key == "overdue")
    body = login(coordinator_a).get(worklist.url()).content.decode()
    assert "surveillance/print.js" in body and "surveillance/workspace.css" in body
