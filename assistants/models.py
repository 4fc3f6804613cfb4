from __future__ import annotations

import re
import uuid
from typing import TypedDict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager

from core.phrases import registered as registered_phrases
from tenants.models import Tenant
from tenants.phone import normalize_e164, validate_e164

# BCP-47 as Twilio uses it: "en-US", "es-419", "zh-Hans-CN"...
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$")


def validate_language(value: str) -> None:
    if not _BCP47.match(value or ""):
        raise ValidationError("Enter a BCP-47 language tag such as en-US.", code="language")


def validate_languages(value: object) -> None:
    """A list of BCP-47 tags (the languages an assistant accepts besides its own)."""
    if not isinstance(value, list) or len(value) > 20:
        raise ValidationError("Give a list of at most 20 BCP-47 language tags.", code="languages")
    for tag in value:
        if not isinstance(tag, str):
            raise ValidationError("Each language is a BCP-47 tag such as es-ES.", code="languages")
        validate_language(tag)


def validate_voices(value: object) -> None:
    """{language tag: voice} for speaking in that language."""
    if not isinstance(value, dict):
        raise ValidationError('Give {"<language>": "<voice>", ...}.', code="voices")
    for tag, voice in value.items():
        validate_language(tag)
        if not isinstance(voice, str) or len(voice) > 100:
            raise ValidationError(f"The voice for {tag} must be text (100 characters at most).")


def validate_phrase_overrides(value: object) -> None:
    """{language: {phrase name: text}}: the assistant's own wording of the platform's lines."""
    if not isinstance(value, dict):
        raise ValidationError('Give {"<language>": {"<phrase>": "<text>"}}.', code="phrases")
    names = registered_phrases()
    for language, lines in value.items():
        validate_language(language)
        if not isinstance(lines, dict):
            raise ValidationError(f'The phrases for {language} must be {{"<phrase>": "<text>"}}.')
        for name, text in lines.items():
            if name not in names:
                raise ValidationError(
                    f"Unknown phrase {name!r}; the phrases are: {', '.join(sorted(names))}.",
                    code="phrases",
                )
            if not isinstance(text, str) or not text.strip() or len(text) > 1000:
                raise ValidationError(f"{language}/{name}: give 1 to 1000 characters of text.")


def validate_model(value: str) -> None:
    if value and value not in settings.LLM_MODELS:
        raise ValidationError(
            f"Unknown model {value!r}; choose one of: {', '.join(settings.LLM_MODELS)}.",
            code="model",
        )


def validate_speech_timeout(value: str) -> None:
    if value == "auto" or (value.isdigit() and 1 <= int(value) <= 60):
        return
    raise ValidationError('Use "auto" or a number of seconds from 1 to 60.', code="speech_timeout")


class CallConfig(TypedDict, total=False):
    """The assistant's settings a call runs with (`AssistantConfig.snapshot()`), stored on the
    Call as JSON so that later edits do not rewrite history. Snapshots of older calls may lack
    keys added since: read optional ones with `.get()`."""

    id: str
    updated_at: str | None
    name: str
    mode: str
    model: str
    fallback_model: str
    fast_model: str
    temperature: float
    max_tokens: int
    context_turns: int
    system_prompt: str
    greeting: str
    language: str
    other_languages: list[str]
    transcription_provider: str
    tts_engine: str
    tts_voice: str
    voices: dict[str, str]
    phrases: dict[str, dict[str, str]]
    speech_timeout: str
    interruptible: bool
    transfer_number: str
    transfer_digit: str
    recognition_provider: str
    recognition_model: str
    endpointing_ms: int
    recognition_keywords: str
    voice_provider: str
    stream_voice: str
    # The published version the call runs (absent: the assistant's settings of the moment).
    version: int
    version_id: str


# Keys of `CallConfig` that are not fields of the assistant.
_NOT_FIELDS = ("id", "updated_at", "version", "version_id")


class AssistantConfig(models.Model):
    """How one assistant listens, thinks and speaks."""

    class Mode(models.TextChoices):
        GATHER = "gather", "Gather (webhooks, speech files)"
        RELAY = "relay", "Relay (ConversationRelay streaming)"
        STREAM = "stream", "Stream (Media Streams: our own recognition and voice)"

    class RecognitionProvider(models.TextChoices):
        DEEPGRAM = "deepgram", "Deepgram live streaming"
        ASSEMBLYAI = "assemblyai", "AssemblyAI Universal Streaming"

    class VoiceProvider(models.TextChoices):
        DEEPGRAM = "deepgram", "Deepgram Aura (streaming)"
        ESPEAK = "espeak", "espeak-ng (offline)"

    class TranscriptionProvider(models.TextChoices):
        DEFAULT = "", "Twilio's default"
        GOOGLE = "Google", "Google"
        DEEPGRAM = "Deepgram", "Deepgram (detects the language itself)"

    class TTSEngine(models.TextChoices):
        GTTS = "gtts", "Google TTS (gTTS)"
        SAY = "say", "Twilio's voice (<Say>)"
        ESPEAK = "espeak", "espeak-ng (offline)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="assistants")
    name = models.CharField(max_length=100)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.GATHER)

    model = models.CharField(
        max_length=100, default="llama-3.3-70b-versatile", validators=[validate_model]
    )
    fallback_model = models.CharField(
        max_length=100,
        default="llama-3.1-8b-instant",
        blank=True,
        validators=[validate_model],
        help_text="Used when the main model fails; empty for none.",
    )
    fast_model = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_model],
        help_text="Answers short, simple turns (few words, near an FAQ question, no tool named); "
        "the main model answers the rest. Empty: the main model answers every turn.",
    )
    temperature = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_tokens = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(1), MaxValueValidator(32768)]
    )
    context_turns = models.PositiveIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="How many earlier turns the LLM sees.",
    )
    system_prompt = models.TextField(
        max_length=20000,
        default="You are a helpful, concise phone assistant. Answer in one to three short "
        "sentences that sound natural when spoken aloud.",
    )
    greeting = models.CharField(
        max_length=1000, default="Hello! Thanks for calling. How can I help you today?"
    )
    language = models.CharField(
        max_length=35,
        default="en-US",
        validators=[validate_language],
        help_text="The language a call starts in (BCP-47, e.g. en-US).",
    )
    other_languages = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_languages],
        help_text='Other languages callers may speak, e.g. ["es-ES", "fr-FR"]: the assistant '
        "switches to one when the caller speaks it or asks for it.",
    )
    transcription_provider = models.CharField(
        max_length=16,
        choices=TranscriptionProvider.choices,
        default=TranscriptionProvider.DEFAULT,
        blank=True,
        help_text="Relay mode's speech recognition; Deepgram hears several languages at once.",
    )
    tts_engine = models.CharField(max_length=16, choices=TTSEngine.choices, default=TTSEngine.GTTS)
    tts_voice = models.CharField(
        max_length=100,
        blank=True,
        help_text="Engine voice (e.g. Polly.Joanna for Twilio's voice); empty for the default.",
    )
    voices = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_voices],
        help_text='The voice for each language, e.g. {"es-ES": "Polly.Lucia"} (espeak-ng: '
        '{"es-ES": "es"}); a language without one uses Tts voice in its own language, or the '
        "engine's default.",
    )
    phrases = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_phrase_overrides],
        help_text='The assistant\'s own wording of the platform\'s lines, e.g. {"es": {"goodbye": '
        '"¡Hasta pronto!"}}. Names: see README, "Languages".',
    )
    speech_timeout = models.CharField(
        max_length=8,
        default="auto",
        validators=[validate_speech_timeout],
        help_text='Seconds of silence that end the caller\'s speech, or "auto".',
    )
    interruptible = models.BooleanField(default=True, help_text="The caller may talk over it.")
    transfer_number = models.CharField(
        max_length=20,
        blank=True,
        validators=[validate_e164],
        help_text="A human to transfer callers to (E.164); empty for no transfers.",
    )
    transfer_digit = models.CharField(
        max_length=1,
        blank=True,
        default="0",
        help_text="Keypad digit that transfers the caller to the transfer number.",
    )
    # Stream mode: the platform's own recognition and voice providers.
    recognition_provider = models.CharField(
        max_length=16, choices=RecognitionProvider.choices, default=RecognitionProvider.DEEPGRAM
    )
    recognition_model = models.CharField(
        max_length=64, blank=True, default="nova-3", help_text="Empty for the provider's default."
    )
    endpointing_ms = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(10), MaxValueValidator(5000)],
        help_text="Stream mode: silence (ms) that ends the caller's turn.",
    )
    recognition_keywords = models.TextField(
        max_length=2000,
        blank=True,
        help_text="Stream mode: words to listen for (names, products), one per line.",
    )
    voice_provider = models.CharField(
        max_length=16, choices=VoiceProvider.choices, default=VoiceProvider.DEEPGRAM
    )
    stream_voice = models.CharField(
        max_length=100,
        blank=True,
        default="aura-2-thalia-en",
        help_text="Stream mode: the provider's voice (e.g. aura-2-thalia-en); empty for its default.",
    )
    published_version = models.ForeignKey(
        "AssistantVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text="What callers get; the settings here are the draft until they are published.",
    )
    scenarios_required = models.BooleanField(
        default=False,
        help_text="Publishing is refused unless every active test scenario passes on the draft.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="assistant_unique_tenant_name"),
            models.CheckConstraint(
                condition=models.Q(temperature__gte=0) & models.Q(temperature__lte=2),
                name="assistant_temperature_0_2",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.transfer_number:
            try:
                self.transfer_number = normalize_e164(self.transfer_number)
            except ValidationError as exc:
                raise ValidationError({"transfer_number": exc.messages}) from exc
        if self.transfer_digit and self.transfer_digit not in "0123456789*#":
            raise ValidationError({"transfer_digit": "Use one keypad key: 0-9, * or #."})

    def snapshot(self) -> CallConfig:
        """The settings a call runs with (the fields `CallConfig` names), stored on the Call so
        later edits don't rewrite history."""
        fields = [name for name in CallConfig.__annotations__ if name not in _NOT_FIELDS]
        data: CallConfig = {name: getattr(self, name) for name in fields}  # type: ignore[misc]
        data["id"] = str(self.id)
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data


class AssistantVersion(models.Model):
    """A published, immutable copy of an assistant: its settings with its FAQ, tools and
    knowledge references, as calls answered with it run them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    note = models.CharField(max_length=500, blank=True, help_text="What changed, and why.")
    # `CallConfig` of the draft when it was published (with `version` and `version_id`).
    config = models.JSONField(default=dict, editable=False)
    # The parts besides the settings: {"faq": [...], "tools": {...}, "knowledge": [...]}.
    parts = models.JSONField(default=dict, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="When it last went live (a roll back puts it live again)."
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["assistant", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["assistant", "number"], name="assistantversion_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.config.get('name', '')} v{self.number}"


class FAQEntry(models.Model):
    """A canned answer: when the caller says one of the patterns, answer without the LLM."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="faq_entries")
    assistant = models.ForeignKey(
        AssistantConfig, on_delete=models.CASCADE, related_name="faq_entries"
    )
    patterns = models.TextField(
        help_text="One question per line; matched ignoring case, punctuation and extra spaces."
    )
    answer = models.TextField(max_length=2000)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        ordering = ["created_at"]
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ entries"

    def __str__(self) -> str:
        return self.pattern_list()[0] if self.pattern_list() else "(empty)"

    def pattern_list(self) -> list[str]:
        return [line.strip() for line in self.patterns.splitlines() if line.strip()]

    def clean(self) -> None:
        if self.assistant_id and self.tenant_id and self.assistant.tenant_id != self.tenant_id:
            raise ValidationError({"assistant": "Choose an assistant of this entry's tenant."})
        if not self.pattern_list():
            raise ValidationError({"patterns": "Give at least one question."})


class SpeechAudio(models.Model):
    """A synthesised sentence, cached per tenant by hash of engine + voice + language + text."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="speech_audio")
    key = models.CharField(
        max_length=64, help_text="sha256 of tenant, engine, voice, language, text."
    )
    engine = models.CharField(max_length=16)
    voice = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=35)
    text = models.TextField()
    # Storage name under an unguessable random path; empty while being made or if it failed.
    file = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    synth_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = verbose_name_plural = "speech audio"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="speechaudio_unique_tenant_key")
        ]

    def __str__(self) -> str:
        return f"{self.engine}:{self.text[:40]}"
