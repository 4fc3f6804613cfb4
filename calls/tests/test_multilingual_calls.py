"""Calls in other languages, end to end: a Spanish assistant's every platform line is Spanish, and
a call that starts in English switches to Spanish in gather, relay and talk modes.

Twilio's side is signed webhooks and a real WebSocket to the ASGI app; Groq is the fake server
at the wire, which answers in the language the system prompt asks for.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import Client
from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from calls.events import tenant_group, unbatch
from calls.models import Call, Turn
from calls.tests.relay_helpers import RelayClient, relay_socket, text_of
from config.asgi import application
from tenants.models import RateLimit

pytestmark = pytest.mark.django_db(transaction=True)

SPANISH_ANSWER = (
    "Claro, con mucho gusto le ayudo. Estamos abiertos de lunes a viernes, de ocho de la mañana "
    "a seis de la tarde. ¿Hay algo más en lo que pueda ayudarle?"
)
ASKS_FOR_SPANISH = "Hola, quisiera reservar una cita para mañana por la tarde"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _update(assistant: AssistantConfig, **fields) -> AssistantConfig:
    with scopes_disabled():
        for name, value in fields.items():
            setattr(assistant, name, value)
        assistant.save()
    return assistant


@pytest.fixture
def spanish_a(assistant_a, number_a) -> AssistantConfig:
    return _update(assistant_a, language="es-ES", greeting="Fontanería Acme, ¿dígame?")


@pytest.fixture
def bilingual_a(assistant_a, number_a) -> AssistantConfig:
    return _update(
        assistant_a,
        language="en-US",
        other_languages=["es-ES"],
        tts_voice="Polly.Joanna",
        voices={"es-ES": "Polly.Lucia"},
    )


def _call(call_sid: str) -> Call:
    with scopes_disabled():
        return Call.objects.get(call_sid=call_sid)


def _turns(call_sid: str) -> list[Turn]:
    with scopes_disabled():
        return list(Turn.objects.filter(call__call_sid=call_sid).order_by("sequence"))


def _says(response) -> list[tuple[str, str | None, str | None]]:
    """(text, language, voice) of each <Say>."""
    return [
        ((e.text or "").strip(), e.get("language"), e.get("voice"))
        for e in response.root.iter("Say")
    ]


def _gather_language(response) -> str:
    return next(response.root.iter("Gather")).get("language")


# --- a Spanish assistant: every line the platform says is Spanish ------------------------------


def test_silence_is_reprompted_and_then_ended_in_spanish(twilio, spanish_a, number_a, settings):
    settings.MAX_SILENT_PROMPTS = 1
    call_sid, greeting = twilio.voice(number_a.number)
    assert _gather_language(greeting) == "es-ES"

    reprompt = twilio.gather(call_sid, number_a.number, None)
    assert _says(reprompt) == [("Perdone, no le he entendido. ¿Podría repetirlo?", "es-ES", None)]
    assert _gather_language(reprompt) == "es-ES"

    goodbye = twilio.gather(call_sid, number_a.number, None)
    assert _says(goodbye) == [("Gracias por llamar. Adiós.", "es-ES", None)]
    assert goodbye.has("Hangup")


def test_a_failing_model_gets_the_spanish_apology(twilio, spanish_a, number_a, fake_groq, settings):
    settings.LLM_BACKOFF_SECONDS = 0.01
    fake_groq.queue_fault(503, count=20)
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "¿Pueden arreglar mi caldera hoy?")
    assert response.said == (
        "Lo siento, ahora mismo tengo problemas para responder. ¿Podría repetirlo en un momento?"
    )
    assert _turns(call_sid)[-1].source == "apology"


def test_no_model_configured_is_said_in_spanish(twilio, spanish_a, number_a, settings):
    settings.GROQ_API_KEY = settings.GROQ_BASE_URL = ""
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "¿Pueden arreglar mi caldera hoy?")
    assert response.said.startswith("Lo siento, este asistente todavía no tiene un modelo")


def test_an_answer_cut_short_ends_with_the_spanish_apology(twilio, spanish_a, number_a, fake_groq):
    fake_groq.queue_answer("La primera frase llega entera. La segunda nunca termina")
    fake_groq.queue_fault("cut", after_tokens=7)
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, "¿Cuánto cuesta una visita?")
    assert response.texts("Say") == [
        "La primera frase llega entera.",
        "Perdone, he perdido el hilo.",
        "¿Podría volver a preguntármelo?",
    ]


def test_a_turn_limit_is_spoken_in_spanish(twilio, spanish_a, number_a, tenant_a, fake_groq):
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.TURNS_PER_CALL,
        limit=1,
        window_seconds=60,
        action=RateLimit.Action.SPEAK_AND_CONTINUE,
    )
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "¿Cuánto cuesta una visita?")
    limited = twilio.gather(call_sid, number_a.number, "¿Y los fines de semana?")
    assert limited.said == (
        "Vayamos un poco más despacio. Por favor, espere un momento antes de volver a preguntar."
    )
    assert limited.has("Gather")


def test_busy_lines_and_an_inactive_number_are_refused_in_spanish(
    twilio, spanish_a, number_a, tenant_a
):
    RateLimit.objects.create(tenant=tenant_a, kind=RateLimit.Kind.CONCURRENT_CALLS, limit=1)
    twilio.voice(number_a.number, from_="+15550000001")
    _, busy = twilio.voice(number_a.number, from_="+15550000002")
    assert _says(busy) == [
        (
            "Lo sentimos, en este momento todas nuestras líneas están ocupadas. Por favor, "
            "vuelva a llamar en unos minutos. Adiós.",
            "es-ES",
            None,
        )
    ]

    with scopes_disabled():
        number_a.active = False
        number_a.save()
    _, closed = twilio.voice(number_a.number, from_="+15550000003")
    assert _says(closed) == [
        (
            "Lo sentimos, esta línea no está disponible en este momento. Por favor, "
            "inténtelo más tarde. Adiós.",
            "es-ES",
            None,
        )
    ]


def test_the_fallback_url_apologises_in_the_numbers_language(twilio, spanish_a, number_a):
    params = twilio.params(twilio.new_sid(), to=number_a.number, ErrorCode="11200")
    response = twilio.post("/twilio/fallback", params)
    assert _says(response) == [
        (
            "Lo sentimos, algo ha fallado por nuestra parte. Por favor, vuelva a llamar más "
            "tarde. Adiós.",
            "es-ES",
            None,
        )
    ]


def test_an_unknown_number_has_no_assistant_so_it_is_told_in_english(twilio):
    _, response = twilio.voice("+14155559999")
    assert _says(response) == [
        ("Sorry, the number you have called is not in service. Goodbye.", "en-US", None)
    ]


def test_an_assistants_own_wording_wins_on_the_phone(twilio, spanish_a, number_a, settings):
    settings.MAX_SILENT_PROMPTS = 0
    _update(spanish_a, phrases={"es": {"goodbye": "¡Hasta pronto!"}})
    call_sid, _ = twilio.voice(number_a.number)
    response = twilio.gather(call_sid, number_a.number, None)
    assert _says(response) == [("¡Hasta pronto!", "es-ES", None)]


def test_a_slow_model_gets_the_spanish_one_moment_on_a_live_line(
    twilio, spanish_a, number_a, fake_groq, settings
):
    settings.LLM_FILLER_SECONDS = 0.3
    _update(spanish_a, mode=AssistantConfig.Mode.RELAY)
    fake_groq.set_latency(ttft_ms=1200)
    fake_groq.queue_answer("Sí, reparamos calderas.")
    call_sid, response = twilio.voice(number_a.number)
    socket_url, _, _ = relay_socket(response)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("¿Reparan calderas?")
        frames = await client.answer()
        await client.close()
        return frames

    frames = async_to_sync(conversation)()
    assert frames[0]["token"] == "Un momento, por favor. "
    assert text_of(frames) == "Un momento, por favor. Sí, reparamos calderas."


def test_a_spent_token_budget_ends_a_relay_call_in_spanish(
    twilio, spanish_a, number_a, tenant_a, fake_groq
):
    _update(spanish_a, mode=AssistantConfig.Mode.RELAY)
    RateLimit.objects.create(
        tenant=tenant_a,
        kind=RateLimit.Kind.LLM_TOKENS_PER_DAY,
        limit=1,
        window_seconds=86400,
        action=RateLimit.Action.SPEAK_AND_HANG_UP,
    )
    call_sid, response = twilio.voice(number_a.number)
    socket_url, _, _ = relay_socket(response)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("Cuénteme algo sobre tuberías.")
        await client.answer()
        await client.prompt("¿Y otra cosa?")
        end = await client.receive()
        await client.close()
        return end

    end = async_to_sync(conversation)()
    params = twilio.params(
        call_sid, to=number_a.number, SessionStatus="ended", HandoffData=end["handoffData"]
    )
    action = twilio.post("/twilio/relay-action", params)
    assert _says(action) == [
        (
            "Lo siento, hoy ya no puedo responder más preguntas. Por favor, vuelva a llamar "
            "mañana.",
            "es-ES",
            None,
        )
    ]
    assert action.has("Hangup")


# --- English to Spanish, in each mode --------------------------------------------------------------


def test_a_gather_call_switches_to_spanish_and_stays_there(
    twilio, bilingual_a, number_a, fake_groq
):
    call_sid, greeting = twilio.voice(number_a.number)
    assert _gather_language(greeting) == "en-US"

    answer = twilio.gather(call_sid, number_a.number, ASKS_FOR_SPANISH)
    assert " ".join(answer.texts("Say")) == SPANISH_ANSWER
    assert {(language, voice) for _, language, voice in _says(answer)} == {("es-ES", "Polly.Lucia")}
    assert _gather_language(answer) == "es-ES"
    system = fake_groq.requests[-1].messages[0]["content"]
    assert system.endswith(
        "Always answer in Spanish (es-ES), whatever language earlier turns were in."
    )

    # The next webhook goes on in Spanish: the language is the call's, not the request's.
    silence = twilio.gather(call_sid, number_a.number, None)
    assert _says(silence) == [
        ("Perdone, no le he entendido. ¿Podría repetirlo?", "es-ES", "Polly.Lucia")
    ]
    assert _gather_language(silence) == "es-ES"
    assert _call(call_sid).language == "es-ES"
    assert [(t.role, t.language) for t in _turns(call_sid)] == [
        ("caller", "es-ES"),
        ("assistant", "es-ES"),
    ]

    # Asking for English switches back, with the assistant's English voice.
    back = twilio.gather(call_sid, number_a.number, "Sorry, can we speak English please?")
    assert {(language, voice) for _, language, voice in _says(back)} == {("en-US", "Polly.Joanna")}
    assert _gather_language(back) == "en-US"
    assert _call(call_sid).language == "en-US"


def test_the_api_shows_the_calls_language_and_each_turns_to_its_tenant_only(
    twilio, bilingual_a, number_a, fake_groq, api, alice, charlie
):
    call_sid, _ = twilio.voice(number_a.number)
    twilio.gather(call_sid, number_a.number, "¿Habla español?")
    url = f"/api/v1/calls/{_call(call_sid).id}/"
    detail = api(alice).get(url).json()
    assert detail["language"] == "es-ES"
    assert [t["language"] for t in detail["turns"]] == ["es-ES", "es-ES"]
    assert api(charlie).get(url).status_code == 404


def test_one_word_and_unsure_turns_keep_the_call_in_its_language(
    twilio, bilingual_a, number_a, fake_groq
):
    call_sid, _ = twilio.voice(number_a.number)
    for said in ("Hola", "Bueno, okay, merci, danke"):
        response = twilio.gather(call_sid, number_a.number, said)
        assert _gather_language(response) == "en-US"
    assert _call(call_sid).language == ""
    assert {t.language for t in _turns(call_sid)} == {"en-US"}


def test_relay_twiml_lists_each_language_with_its_voice(twilio, bilingual_a, number_a):
    _update(bilingual_a, mode=AssistantConfig.Mode.RELAY)
    _, response = twilio.voice(number_a.number)
    relay = next(response.root.iter("ConversationRelay"))
    assert relay.get("language") == "en-US"
    assert relay.get("transcriptionLanguage") is None
    assert [
        (e.get("code"), e.get("ttsProvider"), e.get("voice")) for e in relay.iter("Language")
    ] == [("en-US", "Amazon", "Joanna"), ("es-ES", "Amazon", "Lucia")]


def test_a_relay_call_switches_to_spanish_with_a_language_message(
    twilio, bilingual_a, number_a, tenant_a, fake_groq
):
    _update(bilingual_a, mode=AssistantConfig.Mode.RELAY)
    call_sid, response = twilio.voice(number_a.number)
    socket_url, _, _ = relay_socket(response)

    async def conversation():
        layer = get_channel_layer()
        dashboard = await layer.new_channel()
        await layer.group_add(tenant_group(tenant_a.id), dashboard)
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt("¿Habla español?")
        switch = await client.receive()
        frames = await client.answer()
        await client.close()
        events = []
        while True:
            try:
                events.extend(unbatch(await asyncio.wait_for(layer.receive(dashboard), 1.0)))
            except TimeoutError:
                return switch, frames, events

    switch, frames, events = async_to_sync(conversation)()
    assert switch == {"type": "language", "ttsLanguage": "es-ES", "transcriptionLanguage": "es-ES"}
    assert text_of(frames) == SPANISH_ANSWER
    language_events = [e["data"] for e in events if e["event"] == "language"]
    assert language_events == [{"language": "es-ES", "previous": "en-US"}]
    turns = [e["data"]["turn"] for e in events if e["event"] == "turn"]
    assert [t["language"] for t in turns] == ["es-ES", "es-ES"]
    assert _call(call_sid).language == "es-ES"


def test_relay_with_deepgram_hears_every_language_and_switches_speech_only(
    twilio, bilingual_a, number_a, fake_groq
):
    _update(
        bilingual_a,
        mode=AssistantConfig.Mode.RELAY,
        transcription_provider=AssistantConfig.TranscriptionProvider.DEEPGRAM,
    )
    call_sid, response = twilio.voice(number_a.number)
    relay = next(response.root.iter("ConversationRelay"))
    assert relay.get("transcriptionLanguage") == "multi"
    assert relay.get("transcriptionProvider") == "Deepgram"
    socket_url, _, _ = relay_socket(response)

    async def conversation():
        client = RelayClient(socket_url)
        await client.connect()
        await client.setup(call_sid)
        await client.prompt(ASKS_FOR_SPANISH)
        switch = await client.receive()
        await client.answer()
        await client.close()
        return switch

    assert async_to_sync(conversation)() == {"type": "language", "ttsLanguage": "es-ES"}


def test_a_talk_page_conversation_switches_to_spanish(alice, bilingual_a, fake_groq):
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://localhost"), (b"cookie", cookie)]

    async def conversation():
        socket = WebsocketCommunicator(
            application, f"/ws/assistants/{bilingual_a.id}/talk/", headers=headers
        )
        await socket.connect()
        ready = json.loads(await socket.receive_from(timeout=10))
        await socket.send_to(text_data=json.dumps({"type": "prompt", "text": "¿Habla español?"}))
        switch = json.loads(await socket.receive_from(timeout=10))
        text = ""
        while True:
            frame = json.loads(await socket.receive_from(timeout=10))
            text += frame.get("token", "")
            if frame.get("last"):
                break
        await socket.disconnect()
        return ready, switch, text

    ready, switch, text = async_to_sync(conversation)()
    assert ready["language"] == "en-US"
    assert switch == {"type": "language", "language": "es-ES"}
    assert text == SPANISH_ANSWER
    with scopes_disabled():
        call = Call.objects.get(mode=Call.Mode.WEB)
    assert call.language == "es-ES"


# --- the API ---------------------------------------------------------------------------------------


def test_languages_voices_and_wording_are_set_through_the_api(api, alice, assistant_a):
    url = f"/api/v1/assistants/{assistant_a.id}/"
    body = {
        "other_languages": ["es-ES", "fr-FR"],
        "voices": {"es-ES": "Polly.Lucia"},
        "phrases": {"es": {"goodbye": "¡Hasta pronto!"}},
        "transcription_provider": "Deepgram",
    }
    response = api(alice).patch(url, body, format="json")
    assert response.status_code == 200, response.json()
    assert {name: response.json()[name] for name in body} == body
    with scopes_disabled():
        assert AssistantConfig.objects.get(id=assistant_a.id).phrases == body["phrases"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phrases": {"es": {"no_such_line": "Hola"}}}, "phrases"),
        ({"phrases": {"es": {"goodbye": ""}}}, "phrases"),
        ({"phrases": {"not a language": {"goodbye": "Adiós"}}}, "phrases"),
        ({"phrases": ["goodbye"]}, "phrases"),
        ({"other_languages": "es-ES"}, "other_languages"),
        ({"other_languages": ["español"]}, "other_languages"),
        ({"voices": {"es-ES": 3}}, "voices"),
        ({"transcription_provider": "Whisper"}, "transcription_provider"),
    ],
)
def test_bad_language_settings_get_a_400_naming_the_field(api, alice, assistant_a, body, field):
    response = api(alice).patch(f"/api/v1/assistants/{assistant_a.id}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_an_outsider_cannot_change_another_tenants_wording(api, charlie, assistant_a):
    url = f"/api/v1/assistants/{assistant_a.id}/"
    body = {"phrases": {"en": {"goodbye": "Gotcha."}}}
    assert api(charlie).patch(url, body, format="json").status_code == 404
    with scopes_disabled():
        assert AssistantConfig.objects.get(id=assistant_a.id).phrases == {}
