"""Our own voice-activity detector on the caller's audio (WebRTC's VAD), so the platform can stop
talking the moment the caller starts, without waiting for the recognition provider."""

from __future__ import annotations

import webrtcvad

from providers.audio import FRAME_BYTES, SAMPLE_RATE, mulaw_to_pcm


class SpeechDetector:
    """Says when the caller starts and stops talking, from 20 ms mu-law frames.

    Speech starts after `start_ms` of voiced frames in a row (a cough or a click is shorter)
    and stops after `stop_ms` without any.
    """

    def __init__(self, *, aggressiveness: int = 2, start_ms: int = 100, stop_ms: int = 300) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = max(1, start_ms // 20)
        self._stop_frames = max(1, stop_ms // 20)
        self._voiced = 0
        self._unvoiced = 0
        self.voiced = False  # the last frame
        self.speaking = False

    def feed(self, frame: bytes) -> str:
        """ "started", "stopped" or "" for one 20 ms mu-law frame (other sizes are ignored)."""
        if len(frame) != FRAME_BYTES:
            return ""
        voiced = self.voiced = self._vad.is_speech(mulaw_to_pcm(frame).tobytes(), SAMPLE_RATE)
        if voiced:
            self._voiced, self._unvoiced = self._voiced + 1, 0
        else:
            self._voiced, self._unvoiced = 0, self._unvoiced + 1
        if not self.speaking and self._voiced >= self._start_frames:
            self.speaking = True
            return "started"
        if self.speaking and self._unvoiced >= self._stop_frames:
            self.speaking = False
            return "stopped"
        return ""
