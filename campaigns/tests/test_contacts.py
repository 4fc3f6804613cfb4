"""Contact lists from CSV: what is added, and a clear report of every row left out."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from campaigns.models import Campaign, Contact, DoNotCall

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(tenant_a, assistant_a, number_a) -> Campaign:
    with scopes_disabled():
        return Campaign.objects.create(
            tenant=tenant_a, name="Survey", assistant=assistant_a, phone_number=number_a
        )


def _upload(api, key, campaign, content: bytes):
    upload = io.BytesIO(content)
    upload.name = "contacts.csv"
    return api(key=key).post(
        f"/api/v1/campaigns/{campaign.id}/contacts/", {"file": upload}, format="multipart"
    )


def test_a_csv_with_bad_rows_gets_a_report_line_by_line(api, key_a, campaign, tenant_a):
    with scopes_disabled():
        DoNotCall.objects.create(tenant=tenant_a, number="+14155553005")
    csv_text = "\n".join(
        [
            "Number,first_name,timezone,opt_out",
            "+14155553001,Ada,Europe/London,",
            "+1 (415) 555-3002,Grace,,",
            "not a number,Alan,,",
            "+14155553001,Ada again,,",
            "+14155553003,Linus,Mars/Olympus,",
            "+14155553004,Ken,,yes",
            "+14155553005,Barbara,,",
            "4155553006,Edsger,,",
            "+14155553007," + "x" * 300 + ",,",
        ]
    ).encode()

    response = _upload(api, key_a, campaign, csv_text)

    assert response.status_code == 201, response.content
    report = response.json()
    assert report["imported"] == 2
    assert [(p["line"], p["number"]) for p in report["duplicates"]] == [(5, "+14155553001")]
    invalid = {p["line"]: p["reason"] for p in report["invalid"]}
    assert set(invalid) == {4, 6, 9, 10}
    assert "international format" in invalid[9]
    assert "time zone" in invalid[6]
    assert "over 200 characters" in invalid[10]
    assert [p["line"] for p in report["opted_out"]] == [7, 8]
    with scopes_disabled():
        contacts = {c.number: c for c in Contact.objects.filter(campaign=campaign)}
        assert DoNotCall.objects.filter(tenant=tenant_a, number="+14155553004").exists()
    assert set(contacts) == {"+14155553001", "+14155553002"}
    assert contacts["+14155553001"].variables == {"first_name": "Ada"}
    assert contacts["+14155553001"].timezone == "Europe/London"
    listed = api(key=key_a).get(f"/api/v1/campaigns/{campaign.id}/contacts/").json()["results"]
    assert [(c["number"], c["state"]) for c in listed] == [
        ("+14155553001", "pending"),
        ("+14155553002", "pending"),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"first_name,last_name\nAda,Lovelace\n", "number"),
        (b"\xff\xfe\x00n\x00u\x00m", "UTF-8"),
        (b"number\n+14155553001\x00\n", "CSV"),
        (b"", "number"),
    ],
)
def test_a_file_that_is_not_a_contact_list_is_refused_clearly(
    api, key_a, campaign, content, message
):
    response = _upload(api, key_a, campaign, content)
    assert response.status_code == 400
    assert message in " ".join(response.json()["file"])


def test_an_upload_without_a_file_is_a_400(api, key_a, campaign):
    response = api(key=key_a).post(f"/api/v1/campaigns/{campaign.id}/contacts/", {})
    assert response.status_code == 400


def test_a_finished_campaign_takes_no_more_contacts(api, key_a, campaign):
    with scopes_disabled():
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELED)
    response = _upload(api, key_a, campaign, b"number\n+14155553001\n")
    assert response.status_code == 400


def test_a_viewer_cannot_upload(api, bob, campaign):
    response = api(bob).post(f"/api/v1/campaigns/{campaign.id}/contacts/", {})
    assert response.status_code == 403


def test_results_are_a_csv_with_the_variables_and_formulas_defused(api, key_a, campaign):
    _upload(api, key_a, campaign, b"number,first_name\n+14155553001,=HYPERLINK(1)\n")
    response = api(key=key_a).get(f"/api/v1/campaigns/{campaign.id}/results/")
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode().splitlines()
    assert lines[0].endswith(",first_name")
    assert lines[1].startswith("+14155553001,pending,,0,")
    assert lines[1].endswith(",'=HYPERLINK(1)")


def test_results_carry_the_analysis_of_each_contacts_last_call(
    api, key_a, campaign, tenant_a, assistant_a, number_a
):
    from calls import services
    from calls.models import Call
    from campaigns.models import OutboundCall
    from insights.models import CallReport

    _upload(api, key_a, campaign, b"number,first_name\n+14155553001,Ada\n+14155553002,Grace\n")
    with scopes_disabled():
        contact = Contact.objects.get(campaign=campaign, number="+14155553001")
        call = Call.objects.create(
            tenant=tenant_a,
            assistant=assistant_a,
            phone_number=number_a,
            call_sid="CA" + "7" * 32,
            from_number=number_a.number,
            to_number=contact.number,
            direction="outbound",
            status=Call.Status.IN_PROGRESS,
            config_snapshot=assistant_a.snapshot(),
            started_at=timezone.now(),
            answered_at=timezone.now(),
        )
        OutboundCall.objects.create(tenant=tenant_a, call=call, contact=contact)
        contact.last_call = call
        contact.save()
        services.call_finish(call=call)  # writes the call's report
        CallReport.objects.filter(call=call).update(
            success=True,
            sentiment="positive",
            summary="=Booked a cleaning",
            data={"appointment": "Tuesday 10:00", "services": ["cleaning", "polish"]},
        )
    response = api(key=key_a).get(f"/api/v1/campaigns/{campaign.id}/results/")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    ada, grace = rows
    assert (ada["success"], ada["sentiment"]) == ("True", "positive")
    assert ada["summary"] == "'=Booked a cleaning"  # an LLM's text is defused like any cell
    assert ada["data:appointment"] == "Tuesday 10:00"
    assert json.loads(ada["data:services"]) == ["cleaning", "polish"]
    assert grace["success"] == grace["data:appointment"] == ""
