"""Numbers imported from a tenant's own Twilio account and wired to the platform by it."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from tenants.models import PhoneNumber

pytestmark = pytest.mark.django_db(transaction=True)

SID_A, TOKEN_A = "AC" + "a" * 32, "tenant-a-token"
OWN = "+14155558001"
URL = "/api/v1/twilio-numbers/"


@pytest.fixture
def own_account(tenant_a, twilio_cloud):
    tenant_a.twilio_account_sid = SID_A
    tenant_a.set_twilio_auth_token(TOKEN_A)
    tenant_a.save()
    twilio_cloud.add_account(SID_A, TOKEN_A)
    sid = twilio_cloud.add_number(SID_A, OWN)
    twilio_cloud.add_number(SID_A, "+14155558002")
    return twilio_cloud.numbers[SID_A][sid]


@pytest.fixture
def tasks_inline():
    from config.celery import app

    option = f"{app.namespace}_TASK_ALWAYS_EAGER"
    previous = app.conf.task_always_eager
    app.conf.update({option: True})
    yield
    app.conf.update({option: previous})


def test_an_imported_number_is_wired_to_the_platform_and_unwired_on_removal(
    api, key_a, assistant_a, own_account, live_server, tasks_inline
):
    client = api(key=key_a)
    before = client.get(URL).json()
    imported = client.post(
        URL, {"number": OWN, "assistant": str(assistant_a.id), "label": "Sales"}, format="json"
    )

    assert {n["number"]: (n["imported"], n["wired"]) for n in before} == {
        OWN: (False, False),
        "+14155558002": (False, False),
    }
    assert imported.status_code == 201, imported.content
    assert own_account["voice_url"] == f"{live_server.url}/twilio/voice"
    assert own_account["voice_fallback_url"] == f"{live_server.url}/twilio/fallback"
    assert own_account["status_callback"] == f"{live_server.url}/twilio/status"
    listed = {n["number"]: (n["imported"], n["wired"]) for n in client.get(URL).json()}
    assert listed[OWN] == (True, True)

    assert client.delete(f"/api/v1/phone-numbers/{imported.json()['id']}/").status_code == 204
    assert (own_account["voice_url"], own_account["status_callback"]) == ("", "")


def test_a_number_the_account_does_not_hold_is_refused_and_nothing_is_stored(
    api, key_a, own_account
):
    response = api(key=key_a).post(URL, {"number": "+14155558999"}, format="json")
    assert response.status_code == 400
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number="+14155558999").exists()


def test_twilio_out_of_reach_is_a_503_and_nothing_is_stored(api, key_a, own_account, twilio_cloud):
    twilio_cloud.stop()
    assert api(key=key_a).get(URL).status_code == 503
    assert api(key=key_a).post(URL, {"number": OWN}, format="json").status_code == 503
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number=OWN).exists()


def test_a_tenant_on_the_platforms_account_cannot_import(api, key_b, own_account):
    response = api(key=key_b).post(URL, {"number": OWN}, format="json")
    assert response.status_code == 400
    assert "own Twilio account" in response.json()["detail"]
    assert api(key=key_b).get(URL).status_code == 400
    with scopes_disabled():
        assert not PhoneNumber.objects.filter(number=OWN).exists()


def test_another_tenants_assistant_is_a_404(api, key_a, assistant_b, own_account):
    response = api(key=key_a).post(
        URL, {"number": OWN, "assistant": str(assistant_b.id)}, format="json"
    )
    assert response.status_code == 404
    assert own_account["voice_url"] == ""


@pytest.fixture
def twilio_worker(twilio_cloud, live_server, media_root, tmp_path):
    """A real worker that reaches the Twilio stand-in; tasks the platform queues go to it."""
    from django.conf import settings

    from devtools.testing import start_test_worker, stop_celery_worker, tasks_queued_to

    worker = start_test_worker(
        log_path=tmp_path / "worker.log",
        media_root=media_root,
        extra_env={
            "TWILIO_API_BASE_URL": twilio_cloud.base_url,
            "PUBLIC_BASE_URL": live_server.url,
            "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
        },
    )
    with tasks_queued_to(worker.queue):
        yield worker
    stop_celery_worker(worker)


def _wait(condition, *, timeout: float = 30) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _import_both(api, key_a, twilio_cloud) -> list[dict]:
    for number in (OWN, "+14155558002"):
        assert api(key=key_a).post(URL, {"number": number}, format="json").status_code == 201
    wired = list(twilio_cloud.numbers[SID_A].values())
    assert all(n["voice_url"].endswith("/twilio/voice") for n in wired)
    return wired


def test_the_numbers_of_a_deleted_tenant_are_unwired(
    api, key_a, tenant_a, own_account, twilio_worker, twilio_cloud
):
    wired = _import_both(api, key_a, twilio_cloud)

    tenant_a.delete()

    assert _wait(lambda: all(n["voice_url"] == "" for n in wired)), twilio_worker.log()[-2000:]
    assert all((n["voice_fallback_url"], n["status_callback"]) == ("", "") for n in wired)


def test_a_switched_off_tenants_numbers_are_unwired_and_wired_again_when_switched_on(
    api, key_a, tenant_a, own_account, twilio_worker, twilio_cloud, live_server
):
    wired = _import_both(api, key_a, twilio_cloud)

    tenant_a.active = False
    tenant_a.save()
    assert _wait(lambda: all(n["voice_url"] == "" for n in wired)), twilio_worker.log()[-2000:]

    wired[1]["voice_url"] = "https://elsewhere.example.com/voice"  # the tenant moved one away
    tenant_a.active = True
    tenant_a.save()
    assert _wait(lambda: wired[0]["voice_url"] == f"{live_server.url}/twilio/voice")
    assert wired[0]["status_callback"] == f"{live_server.url}/twilio/status"
    assert wired[1]["voice_url"] == "https://elsewhere.example.com/voice"
