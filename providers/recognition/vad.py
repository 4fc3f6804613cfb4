"""Our own voice-activity detector on the caller's audio (WebRTC's VAD), so the platform can stop
talking the moment the caller starts, without waiting for the recognition provider."""

from __future__ import annotations

import webrtcvad

from providers.audio import AUDIBLE, FRAME_BYTES, FRAME_MS, SAMPLE_RATE, mulaw_to_pcm, peak


class SpeechDetector:
    """Says when the caller starts and stops talking, from 20 ms mu-law frames.

    Speech starts after `start_ms` of voiced frames in a row (a cough or a click is shorter)
    and stops after `stop_ms` without any. The line is `quiet` once nobody has spoken for
    `quiet_ms`.

    WebRTC's VAD keeps saying "voiced" for a few frames (its hangover: up to ~100 ms) after
    the voice has gone; `audible` is True only for a voiced frame that still carries sound,
    so the last audible frame is where the caller really stopped.
    """

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        start_ms: int = 100,
        stop_ms: int = 300,
        quiet_ms: int = 1500,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = max(1, start_ms // FRAME_MS)
        self._stop_frames = max(1, stop_ms // FRAME_MS)
        self._quiet_frames = max(1, quiet_ms // FRAME_MS)
        self._voiced = 0
        self._unvoiced = self._quiet_frames  # a call starts quiet
        self.voiced = False  # the last frame
        self.audible = False  # the last frame, voiced and not just the VAD's hangover
        self.speaking = False

    @property
    def quiet(self) -> bool:
        return self._unvoiced >= self._quiet_frames

    def feed(self, frame: bytes) -> str:
        """ "started", "stopped" or "" for one 20 ms mu-law frame (other sizes are ignored)."""
        if len(frame) != FRAME_BYTES:
            return ""
        voiced = self.voiced = self._vad.is_speech(mulaw_to_pcm(frame).tobytes(), SAMPLE_RATE)
        if voiced:
            self._voiced, self._unvoiced = self._voiced + 1, 0
            self.audible = peak(frame) >= AUDIBLE
        else:
            self._voiced, self._unvoiced = 0, self._unvoiced + 1
            self.audible = False
        if not self.speaking and self._voiced >= self._start_frames:
            self.speaking = True
            return "started"
        if self.speaking and self._unvoiced >= self._stop_frames:
            self.speaking = False
            return "stopped"
        return ""
