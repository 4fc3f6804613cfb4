"""Telephone audio: G.711 mu-law at 8000 Hz in 20 ms frames, as Twilio's Media Streams carry it.

The standard library's `audioop` is deprecated (gone in Python 3.13), so the codec is two numpy
lookup tables and resampling is soxr's.
"""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # one mu-law byte per sample
SILENCE = b"\xff"  # mu-law's zero

_BIAS = 0x84
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + _BIAS << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _encode_table() -> np.ndarray:
    # Sun's reference G.711 coder (as audioop had it): 14-bit magnitude, segment search.
    samples = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(samples < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(samples), 8159) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


_DECODE = _decode_table()
_ENCODE = _encode_table()  # indexed by sample + 32768


# mu-law codes by loudness: 0 for silence up to 127 for the loudest (the sign bit dropped).
_LOUDNESS = bytes(127 - (code & 0x7F) for code in range(256))
# The loudness of the quietest code that decodes to 64 or more (about -54 dBFS).
AUDIBLE = int(np.argmax(np.abs(_DECODE[np.arange(127, -1, -1)]) >= 64))


def peak(frame: bytes) -> int:
    """How loud the loudest sample of mu-law audio is, in codes (0 to 127): no decoding."""
    return max(frame.translate(_LOUDNESS), default=0)


def mulaw_to_pcm(data: bytes) -> np.ndarray:
    """16-bit linear samples of mu-law bytes."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm_to_mulaw(samples: np.ndarray) -> bytes:
    """mu-law bytes of 16-bit linear samples."""
    return _ENCODE[samples.astype(np.int32) + 32768].tobytes()


def resample(samples: np.ndarray, rate: int, to: int = SAMPLE_RATE) -> np.ndarray:
    """16-bit samples at `rate` as 16-bit samples at `to` (soxr's high quality)."""
    if rate == to or not len(samples):
        return samples.astype(np.int16)
    return soxr.resample(samples.astype(np.int16), rate, to)


def frames(data: bytes, *, pad: bool = True) -> list[bytes]:
    """mu-law audio cut into 20 ms frames; the last one padded with silence (or dropped)."""
    chunks = [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]
    if chunks and len(chunks[-1]) < FRAME_BYTES:
        if not pad:
            return chunks[:-1]
        chunks[-1] = chunks[-1].ljust(FRAME_BYTES, SILENCE)
    return chunks


def level(samples: np.ndarray) -> float:
    """Root mean square of 16-bit samples (0 for silence, ~3000 for speech on a phone line)."""
    if not len(samples):
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
