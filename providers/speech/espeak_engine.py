"""espeak-ng, an offline engine: a subprocess that writes WAV to stdout in milliseconds."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

from providers.speech.base import Audio, Engine, TTSError

TIMEOUT_SECONDS = 10.0
# Voice names such as "en-us", "en-gb-x-rp", "en-us+f3"; never anything that reads as an option.
_VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-/]{0,63}$")
# espeak-ng falls back from a region to its language by itself (fr-CA -> fr, es-MX -> es-419);
# these are the tags where that fallback picks the wrong language.
_VOICE_FOR_LANGUAGE = {"zh-hk": "yue", "zh-yue": "yue", "iw": "he"}


def espeak_voice(language: str) -> str:
    """The espeak-ng voice for a BCP-47 tag."""
    tag = language.replace("_", "-").lower()
    return _VOICE_FOR_LANGUAGE.get(tag, tag)


def _with_sizes(wav: bytes) -> bytes:
    """espeak-ng streams WAV with placeholder sizes; write the real ones so players trust them."""
    if len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise TTSError("espeak-ng did not produce WAV audio")
    fixed = bytearray(wav)
    fixed[4:8] = struct.pack("<I", len(wav) - 8)
    position = 12
    while position + 8 <= len(wav):
        chunk, size = (
            wav[position : position + 4],
            struct.unpack("<I", wav[position + 4 : position + 8])[0],
        )
        if chunk == b"data":
            fixed[position + 4 : position + 8] = struct.pack("<I", len(wav) - position - 8)
            return bytes(fixed)
        position += 8 + size
    raise TTSError("espeak-ng produced WAV audio without data")


class EspeakEngine(Engine):
    name = "espeak"

    @staticmethod
    def available() -> bool:
        """Whether espeak-ng is installed on this machine."""
        return shutil.which("espeak-ng") is not None

    def synthesize(self, text: str, *, language: str, voice: str) -> Audio:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise TTSError("espeak-ng is not installed", permanent=True)
        name = voice or espeak_voice(language)
        if not _VOICE.match(name):
            raise TTSError(f"invalid espeak-ng voice {name!r}", permanent=True)
        try:
            # The text goes through stdin, so it can never be read as a command-line option.
            result = subprocess.run(
                [binary, "-v", name, "--stdin", "--stdout"],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TTSError(f"espeak-ng took longer than {TIMEOUT_SECONDS} s") from exc
        except OSError as exc:
            raise TTSError(f"espeak-ng could not start: {exc}") from exc
        if result.returncode != 0 or not result.stdout:
            message = result.stderr.decode("utf-8", "replace").strip()
            message = message or f"exit status {result.returncode}"
            raise TTSError(f"espeak-ng: {message}", permanent="does not exist" in message)
        return Audio(data=_with_sizes(result.stdout), content_type="audio/wav", extension="wav")
