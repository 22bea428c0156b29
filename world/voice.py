"""A synthesized voice (speech-like, no words) and the loudness a pulsing light follows.

The voice is a glottal source (harmonics of a gliding pitch) shaped by two formants that change from syllable to
syllable, with a breath of noise at some syllables' starts, under a syllabic loudness envelope: syllables of 0.08-0.3 s
grouped into words and phrases. Nothing is recorded or downloaded; a seed draws it all.
"""

import numpy as np

VOICE_SECONDS = 6.0  # every voice is drawn this long and cut: frames and sound of one seed agree at any length
VOICE_GAIN = 0.35  # peak amplitude
PITCH_RANGE_HZ = (95.0, 230.0)
MAX_HARMONIC_HZ = 4_000.0
# (F1, F2) in Hz of a few vowels (textbook averages); each syllable takes one.
VOWEL_FORMANTS_HZ = ((730, 1090), (270, 2290), (530, 1840), (570, 840), (300, 870), (660, 1720), (490, 1350))
FORMANT_WIDTH_HZ = 120.0
ENVELOPE_RATE = 1_000  # Hz: the envelope and formants are drawn at this rate and interpolated
LOUDNESS_WINDOW_S = 0.04  # RMS window of `loudness`
LOUDNESS_RANGE_DB = 30.0  # `loudness` maps [peak - this, peak] dB onto [0, 1]


def syllables(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float, float, int]]:
    """(start s, length s, peak level, vowel) of each syllable: words of 1-4 syllables, short gaps inside a phrase,
    longer ones between phrases."""
    result, time = [], float(rng.uniform(0.0, 0.4))
    while time < duration_s:
        for _ in range(int(rng.integers(1, 5))):  # one word
            length = float(rng.uniform(0.08, 0.3))
            result.append((time, length, float(rng.uniform(0.45, 1.0)), int(rng.integers(len(VOWEL_FORMANTS_HZ)))))
            time += length + float(rng.uniform(0.0, 0.06))
        time += float(rng.uniform(0.05, 0.2)) if rng.random() < 0.75 else float(rng.uniform(0.3, 0.8))
    return result


def speech(seed: int, num_samples: int, sampling_rate: int) -> np.ndarray:
    """(num_samples,) float64 dry voice of `seed`; the same seed gives the same voice at any length."""
    rng = np.random.default_rng(seed)
    total = int(VOICE_SECONDS * sampling_rate)
    control_times = np.arange(int(VOICE_SECONDS * ENVELOPE_RATE)) / ENVELOPE_RATE
    envelope = np.zeros_like(control_times)
    first, second = np.full_like(control_times, 500.0), np.full_like(control_times, 1500.0)
    breaths = []
    for start, length, level, vowel in syllables(rng, VOICE_SECONDS):
        inside = (control_times >= start) & (control_times < start + length)
        phase = (control_times[inside] - start) / length
        envelope[inside] = np.maximum(envelope[inside], level * np.sin(np.pi * phase) ** 0.7)
        first[inside], second[inside] = VOWEL_FORMANTS_HZ[vowel]
        if rng.random() < 0.4:
            breaths.append((start, float(rng.uniform(0.02, 0.05))))
    smooth = np.ones(30) / 30  # 30 ms: formants glide between syllables
    first, second = np.convolve(first, smooth, "same"), np.convolve(second, smooth, "same")
    times = np.arange(total) / sampling_rate
    base = rng.uniform(*PITCH_RANGE_HZ)
    glide = np.interp(times, control_times, np.cumsum(rng.standard_normal(len(control_times))) / 400.0)
    pitch = base * np.exp(np.clip(glide, -0.3, 0.3))
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    formant_1, formant_2 = np.interp(times, control_times, first), np.interp(times, control_times, second)
    voice = np.zeros(total)
    for harmonic in range(1, int(MAX_HARMONIC_HZ / PITCH_RANGE_HZ[0]) + 1):
        frequency = harmonic * pitch
        gain = np.exp(-(((frequency - formant_1) / FORMANT_WIDTH_HZ) ** 2))
        gain += 0.6 * np.exp(-(((frequency - formant_2) / FORMANT_WIDTH_HZ) ** 2)) + 0.02 / harmonic
        voice += np.where(frequency < MAX_HARMONIC_HZ, gain, 0.0) * np.sin(harmonic * phase)
    voice *= np.interp(times, control_times, envelope)
    for start, length in breaths:  # a consonant's noise at the syllable's start
        begin, count = int(start * sampling_rate), int(length * sampling_rate)
        noise = np.diff(rng.standard_normal(count + 1)) * np.hanning(count)
        voice[begin : begin + count] += 0.5 * noise[: max(total - begin, 0)]
    voice *= VOICE_GAIN / max(np.abs(voice).max(), 1e-9)
    return voice[:num_samples] if num_samples <= total else np.pad(voice, (0, num_samples - total))


def loudness(audio: np.ndarray, sampling_rate: int, times: np.ndarray) -> np.ndarray:
    """(len(times),) level on [0, 1] of the (mono) audio around each of `times` (s): RMS over LOUDNESS_WINDOW_S,
    in dB below the clip's loudest window, LOUDNESS_RANGE_DB mapped onto [0, 1] (silence 0)."""
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    half = int(LOUDNESS_WINDOW_S * sampling_rate / 2)
    power = np.concatenate([[0.0], np.cumsum(np.asarray(mono, np.float64) ** 2)])
    centres = np.clip(np.round(np.asarray(times) * sampling_rate).astype(int), 0, len(mono))
    low, high = np.clip(centres - half, 0, len(mono)), np.clip(centres + half, 0, len(mono))
    rms = np.sqrt((power[high] - power[low]) / np.maximum(high - low, 1))
    # The reference is the loudest window anywhere in the clip, not only at `times`.
    hop = max(half, 1)
    starts = np.arange(0, max(len(mono) - 2 * half, 1), hop)
    peak = np.sqrt(((power[np.minimum(starts + 2 * half, len(mono))] - power[starts]) / (2 * half or 1)).max())
    level_db = 20 * np.log10(np.maximum(rms, 1e-9) / max(peak, 1e-9))
    return np.clip(1.0 + level_db / LOUDNESS_RANGE_DB, 0.0, 1.0)
