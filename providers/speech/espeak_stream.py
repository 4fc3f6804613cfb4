"""espeak-ng as a streaming voice: raw audio read from its stdout as it is made, resampled to
8 kHz and encoded to mu-law. Offline and fast: the local engine every call can fall back on."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncIterator

import numpy as np
import soxr

from providers.audio import SAMPLE_RATE, pcm_to_mulaw
from providers.speech.base import TTSError
from providers.speech.espeak_engine import _VOICE, espeak_voice
from providers.speech.streaming import StreamingVoice, VoiceSettings, VoiceStream

READ_BYTES = 4096
WAV_HEADER_BYTES = 44


class EspeakStream(VoiceStream):
    def __init__(self, settings: VoiceSettings) -> None:
        self.settings = settings

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        process = await self._start()
        finished = False
        try:
            process.stdin.write(text.encode("utf-8"))
            process.stdin.close()
            header = await process.stdout.readexactly(WAV_HEADER_BYTES)
            rate = struct.unpack("<I", header[24:28])[0]
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16")
            odd = b""
            while chunk := await process.stdout.read(READ_BYTES):
                chunk, odd = _whole_samples(odd + chunk)
                samples = resampler.resample_chunk(np.frombuffer(chunk, dtype=np.int16))
                if len(samples):
                    yield pcm_to_mulaw(samples)
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                yield pcm_to_mulaw(tail)
            finished = True
        except asyncio.IncompleteReadError as exc:
            raise TTSError("espeak-ng produced no audio") from exc
        finally:
            if not finished and process.returncode is None:  # stopped early (barge-in)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    async def _start(self) -> asyncio.subprocess.Process:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise TTSError("espeak-ng is not installed", permanent=True)
        name = self.settings.voice or espeak_voice(self.settings.language)
        if not _VOICE.match(name):
            raise TTSError(f"invalid espeak-ng voice {name!r}", permanent=True)
        try:
            # The text goes through stdin, so it can never be read as a command-line option.
            return await asyncio.create_subprocess_exec(
                binary,
                "-v",
                name,
                "--stdin",
                "--stdout",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise TTSError(f"espeak-ng could not start: {exc}") from exc


def _whole_samples(data: bytes) -> tuple[bytes, bytes]:
    """`data` split into whole 16-bit samples and the odd byte left over."""
    cut = len(data) - len(data) % 2
    return data[:cut], data[cut:]


class EspeakVoice(StreamingVoice):
    name = "espeak"

    def open(self, settings: VoiceSettings) -> EspeakStream:
        return EspeakStream(settings)
