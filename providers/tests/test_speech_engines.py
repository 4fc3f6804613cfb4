"""Speech engines: real espeak-ng audio, gTTS failures at the wire, Twilio's <Say>."""

from __future__ import annotations

import io
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator

import pytest

from providers.speech import TTSError, get_engine
from providers.speech.espeak_engine import espeak_voice
from providers.speech.gtts_engine import gtts_language

GUARD_SECONDS = 30  # a hung engine fails the test instead of hanging the suite
PROXY_VARIABLES = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
]


def _run_guarded(function: Callable[[], object]) -> BaseException | None:
    """Run `function` in a thread; return what it raised (None if nothing). Fails if it hangs."""
    outcome: dict[str, BaseException | None] = {"raised": None}

    def target() -> None:
        try:
            function()
        except BaseException as exc:  # handed to the test thread
            outcome["raised"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    assert not thread.is_alive(), f"still running after {GUARD_SECONDS} s"
    return outcome["raised"]


def _wav(data: bytes) -> wave.Wave_read:
    return wave.open(io.BytesIO(data))


@pytest.fixture
def no_proxy_settings(monkeypatch) -> None:
    for name in [*PROXY_VARIABLES, "NO_PROXY", "no_proxy"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy_through(monkeypatch, no_proxy_settings) -> Callable[[str], None]:
    def route(url: str) -> None:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, url)

    return route


@pytest.fixture
def black_hole() -> Iterator[dict]:
    """A local TCP server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    state: dict = {"port": server.getsockname()[1], "accepted": 0, "stop": False}
    held: list[socket.socket] = []

    def serve() -> None:
        while not state["stop"]:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)
            state["accepted"] += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    state["stop"] = True
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- espeak-ng -------------------------------------------------------------------------------


def test_espeak_makes_a_real_wav_for_american_english():
    audio = get_engine("espeak").synthesize(
        "Thanks for calling Acme Plumbing.", language="en-US", voice=""
    )

    assert audio.content_type == "audio/wav"
    assert audio.extension == "wav"
    assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
    assert len(audio.data) > 10_000
    with _wav(audio.data) as wav:
        assert wav.getnframes() * wav.getsampwidth() * wav.getnchannels() == len(audio.data) - 44
        assert wav.getnframes() / wav.getframerate() > 0.5  # seconds of speech


def test_espeak_speaks_other_languages_too():
    french = get_engine("espeak").synthesize(
        "Bonjour, comment puis-je vous aider ?", language="fr-CA", voice=""
    )
    english = get_engine("espeak").synthesize(
        "Bonjour, comment puis-je vous aider ?", language="en-US", voice=""
    )

    with _wav(french.data) as wav:
        assert wav.getnframes() > 0
    assert french.data != english.data


def test_espeak_uses_the_configured_voice():
    plain = get_engine("espeak").synthesize("Good morning.", language="en-US", voice="")
    female = get_engine("espeak").synthesize("Good morning.", language="en-US", voice="en-us+f3")

    assert female.data[:4] == b"RIFF"
    assert female.data != plain.data


def test_espeak_refuses_an_unknown_voice_for_good():
    with pytest.raises(TTSError) as caught:
        get_engine("espeak").synthesize("Hello.", language="en-US", voice="nosuchvoice")

    assert caught.value.permanent


def test_espeak_never_reads_a_voice_as_an_option():
    with pytest.raises(TTSError) as caught:
        get_engine("espeak").synthesize("Hello.", language="en-US", voice="--help")

    assert caught.value.permanent


def test_espeak_reads_text_that_looks_like_an_option_as_text():
    audio = get_engine("espeak").synthesize("--version", language="en-US", voice="")

    assert audio.data[:4] == b"RIFF"


def test_espeak_is_unavailable_where_it_is_not_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(TTSError) as caught:
        get_engine("espeak").synthesize("Hello.", language="en-US", voice="")

    assert caught.value.permanent
    assert "not installed" in str(caught.value)


@pytest.mark.parametrize(
    ("language", "voice"),
    [("en-US", "en-us"), ("en-GB", "en-gb"), ("fr-CA", "fr-ca"), ("zh-HK", "yue"), ("iw", "he")],
)
def test_espeak_voice_follows_the_language(language, voice):
    assert espeak_voice(language) == voice


# --- gTTS ------------------------------------------------------------------------------------


def test_gtts_fails_with_a_retryable_error_when_the_name_does_not_resolve(no_proxy_settings):
    try:
        socket.getaddrinfo("translate.google.com", 443)
    except OSError:
        pass
    else:
        pytest.skip("this machine can resolve Google's name")

    raised = _run_guarded(
        lambda: get_engine("gtts").synthesize("Hello.", language="en-US", voice="")
    )

    assert isinstance(raised, TTSError)
    assert not raised.permanent


def test_gtts_fails_with_a_retryable_error_when_the_connection_is_refused(proxy_through):
    proxy_through(f"http://127.0.0.1:{_closed_port()}")

    raised = _run_guarded(
        lambda: get_engine("gtts").synthesize("Hello.", language="en-US", voice="")
    )

    assert isinstance(raised, TTSError)
    assert not raised.permanent


def test_gtts_gives_up_after_its_timeout_on_a_server_that_never_answers(
    proxy_through, black_hole, settings
):
    settings.GTTS_TIMEOUT = 0.5
    proxy_through(f"http://127.0.0.1:{black_hole['port']}")

    started = time.monotonic()
    raised = _run_guarded(
        lambda: get_engine("gtts").synthesize("Hello.", language="en-GB", voice="")
    )

    assert isinstance(raised, TTSError)
    assert not raised.permanent
    assert black_hole["accepted"] >= 1  # it really waited on the silent server
    assert time.monotonic() - started >= 0.5


def test_gtts_refuses_a_language_it_does_not_speak_for_good(no_proxy_settings):
    with pytest.raises(TTSError) as caught:
        get_engine("gtts").synthesize("Hello.", language="xx-YY", voice="")

    assert caught.value.permanent


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en-US", ("en", "com")),
        ("en-GB", ("en", "co.uk")),
        ("en-AU", ("en", "com.au")),
        ("en-IN", ("en", "co.in")),
        ("en-CA", ("en", "ca")),
        ("en", ("en", "com")),
        ("fr-CA", ("fr", "ca")),
        ("fr-FR", ("fr", "fr")),
        ("pt-BR", ("pt", "com.br")),
        ("pt-PT", ("pt", "pt")),
        ("es-MX", ("es", "com.mx")),
        ("es-ES", ("es", "es")),
        ("es-419", ("es", "com")),
        ("de-AT", ("de", "com")),
        ("zh-CN", ("zh-CN", "com")),
        ("zh-Hans-CN", ("zh-CN", "com")),
        ("zh-TW", ("zh-TW", "com")),
        ("zh-Hant", ("zh-TW", "com")),
        ("zh-HK", ("yue", "com")),
        ("he-IL", ("iw", "com")),
        ("nb-NO", ("no", "com")),
    ],
)
def test_gtts_language_maps_bcp47_to_a_language_and_an_accent(tag, expected):
    assert gtts_language(tag) == expected


# --- Twilio's voice and the registry ---------------------------------------------------------


def test_say_makes_no_audio():
    engine = get_engine("say")

    assert engine.produces_audio is False
    with pytest.raises(TTSError) as caught:
        engine.synthesize("Hello.", language="en-US", voice="Polly.Joanna")
    assert caught.value.permanent


def test_engines_that_make_files_say_so():
    assert get_engine("gtts").produces_audio
    assert get_engine("espeak").produces_audio


def test_an_unknown_engine_is_a_permanent_error():
    with pytest.raises(TTSError) as caught:
        get_engine("festival")

    assert caught.value.permanent


def test_every_engine_an_assistant_can_choose_exists():
    from assistants.models import AssistantConfig

    for name in AssistantConfig.TTSEngine.values:
        assert get_engine(name).name == name


def test_the_simulated_network_engine_costs_time_by_length_and_makes_a_wav(settings):
    import io
    import time
    import wave

    settings.TTS_SIMULATED_BASE_MS, settings.TTS_SIMULATED_PER_CHAR_MS = 50, 2
    started = time.monotonic()
    audio = get_engine("simulated").synthesize("x" * 50, language="en-US", voice="")
    assert time.monotonic() - started >= 0.15  # 50 ms + 50 x 2 ms
    with wave.open(io.BytesIO(audio.data)) as wav:
        assert wav.getnframes() > 0 and wav.getframerate() == 8000
    assert (audio.content_type, audio.extension) == ("audio/wav", "wav")
