"""TwiML answers, built with the twilio library."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

from assistants.models import AssistantConfig, CallConfig
from calls import languages


@dataclass
class Utterance:
    """One thing to say: a ready audio URL to <Play>, or text for Twilio's <Say>."""

    text: str
    audio_url: str = ""


def twiml_response(response: VoiceResponse, status: int = 200) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml", status=status)


def say(container: VoiceResponse | Gather, text: str, *, config: CallConfig) -> None:
    kwargs = {"language": config.get("language", "en-US")}
    if config.get("tts_engine") == "say" and config.get("tts_voice"):
        kwargs["voice"] = config["tts_voice"]
    container.say(text, **kwargs)


def speak(
    container: VoiceResponse | Gather, utterances: list[Utterance], *, config: CallConfig
) -> None:
    for utterance in utterances:
        if utterance.audio_url:
            container.play(utterance.audio_url)
        else:
            say(container, utterance.text, config=config)


def hang_up_with(text: str, *, config: CallConfig | None = None) -> VoiceResponse:
    response = VoiceResponse()
    say(response, text, config=config or {})
    response.hangup()
    return response


def reject() -> VoiceResponse:
    response = VoiceResponse()
    response.reject(reason="busy")
    return response


def speak_and_listen(
    utterances: list[Utterance], *, config: CallConfig, action_url: str
) -> VoiceResponse:
    """Say the utterances, then listen for the caller's next words.

    When the assistant is interruptible the speech sits inside <Gather>, so the caller can
    talk over it; otherwise it is played first and the gather starts after it.
    """
    response = VoiceResponse()
    gather = Gather(
        input="speech",
        action=action_url,
        method="POST",
        language=config.get("language", "en-US"),
        speech_timeout=config.get("speech_timeout", "auto"),
        action_on_empty_result=True,
    )
    if config.get("interruptible", True):
        speak(gather, utterances, config=config)
    else:
        speak(response, utterances, config=config)
    response.append(gather)
    return response


def play_then_redirect(
    utterances: list[Utterance], *, config: CallConfig, url: str
) -> VoiceResponse:
    """Say the utterances, then fetch the next TwiML from `url` (the rest of an answer)."""
    response = VoiceResponse()
    speak(response, utterances, config=config)
    response.redirect(url, method="POST")
    return response


def _relay_voice(config: CallConfig) -> dict:
    """ConversationRelay's TTS provider and voice for the assistant's configured voice.

    "Polly.Joanna-Neural" / "Google.en-US-Journey-O" name a provider; anything else is passed
    as the voice of Twilio's default provider; empty means Twilio's default voice.
    """
    voice = config.get("tts_voice", "")
    if not voice:
        return {}
    provider, _, name = voice.partition(".")
    if name and provider in ("Polly", "Amazon"):
        return {"tts_provider": "Amazon", "voice": name}
    if name and provider == "Google":
        return {"tts_provider": "Google", "voice": name}
    return {"voice": voice}


def relay_hears_every_language(config: CallConfig) -> bool:
    """Whether ConversationRelay's recognition is set to hear all of the assistant's languages
    at once ("multi": Deepgram detects the language itself), rather than one at a time."""
    deepgram = (
        config.get("transcription_provider") == AssistantConfig.TranscriptionProvider.DEEPGRAM
    )
    return deepgram and languages.is_multilingual(config)


def recorded(response: VoiceResponse, *, callback_url: str) -> VoiceResponse:
    """`response` after <Start><Recording>: Twilio records the whole call from here on (both
    sides, every mode) and posts the finished recording to `callback_url`."""
    started = VoiceResponse()
    start = started.start()
    start.recording(
        recording_status_callback=callback_url,
        recording_status_callback_event="completed",
        recording_status_callback_method="POST",
    )
    started.verbs.extend(response.verbs)
    return started


def conversation_relay(
    *, config: CallConfig, socket_url: str, action_url: str, parameters: dict[str, str]
) -> VoiceResponse:
    """<Connect action><ConversationRelay url ...><Language/>...<Parameter/>...
    </ConversationRelay></Connect>: one <Language> per language the assistant accepts, with
    its voice, so that a switch (a `language` message) speaks with the right one."""
    response = VoiceResponse()
    connect = response.connect(action=action_url, method="POST")
    provider = config.get("transcription_provider") or None
    relay = connect.conversation_relay(
        url=socket_url,
        welcome_greeting=config.get("greeting") or None,
        language=config.get("language", "en-US"),
        transcription_provider=provider,
        transcription_language="multi" if relay_hears_every_language(config) else None,
        interruptible="any" if config.get("interruptible", True) else "none",
        dtmf_detection=True,
        **_relay_voice(config),
    )
    if languages.is_multilingual(config):
        for tag in languages.accepted(config):
            voice = _relay_voice(languages.speaking(config, tag))
            relay.language(code=tag, transcription_provider=provider, **voice)
    for name, value in parameters.items():
        relay.parameter(name=name, value=value)
    return response


def media_stream(*, socket_url: str, action_url: str, parameters: dict[str, str]) -> VoiceResponse:
    """<Connect action><Stream url><Parameter/>...</Stream></Connect>: a bidirectional stream."""
    response = VoiceResponse()
    connect = response.connect(action=action_url, method="POST")
    stream = connect.stream(url=socket_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return response


def dial(number: str) -> VoiceResponse:
    response = VoiceResponse()
    response.dial(number)
    return response


def hang_up() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response
