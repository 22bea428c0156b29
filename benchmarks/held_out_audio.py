"""Audio the embedded model was not trained on, with known onsets, for `bench_embedded.py --held-out`.

Three generators other than the training world's (`world.generate_training_clip`):

- `irregular_tosses`: one ball tossed up from rest again and again at irregular moments (gaps after it comes to rest
  drawn log-normally, tosses of any height), each toss followed by its natural bounces: every hop physically possible,
  the world's physics and impact sounds. (The training world launches balls from rest too, at most twice a ball and
  0.1-1 s after rest; here 3 or more times, 0.05-2 s after rest.)
- `drum_pattern`: a rock, funk or half-time bar at a given tempo on a drum kit synthesized differently from the
  world's drums (an FM kick, a two-tone band-passed snare, a six-oscillator metallic hi-hat), in the world's rooms.
- `hummed_voice`: a voice unlike `world.voice` (a noise-excited, whispered source under exponential syllable
  envelopes of another rhythm), for the pulsing light's loudness tracking; the bundled espeak clip is the other one.

Each returns 16 kHz mono audio, its onsets (s) where it has them, and a caption in the world's words.
"""

from dataclasses import dataclass

import numpy as np

from world import SAMPLE_RATE, caption, render_clip
from world.events import scene_from_onsets
from world.scene import (
    COLOURS,
    GRAVITY,
    MATERIALS,
    RESTITUTION,
    ROOMS,
    SIZES,
    Ball,
    Flight,
    Pulse,
    Scene,
    landing,
)
from world.sound import room_impulse_response

DRUM_TEMPI_BPM = (72.0, 100.0, 132.0, 168.0)
# 16 steps a bar: (kick steps, snare steps, hi-hat steps)
DRUM_BARS = {
    "rock": ((0, 8), (4, 12), tuple(range(0, 16, 2))),
    "funk": ((0, 3, 10), (4, 12), tuple(range(0, 16, 2))),
    "half-time": ((0, 6), (8,), tuple(range(0, 16, 4))),
}
ONSET_MERGE_S = 0.03  # hits closer than this are one onset


@dataclass(frozen=True)
class HeldOutClip:
    name: str
    audio: np.ndarray  # (samples,) float32, 16 kHz
    onsets: np.ndarray  # (n,) s; empty for voices
    caption: str
    frames: np.ndarray | None  # the world's rendering of the same events (ground truth), where there is one


def _pick(rng: np.random.Generator, options) -> str:
    return tuple(options)[rng.integers(len(options))]


def _bounces_from(flight: Flight, restitution: float, duration_s: float) -> list[Flight]:
    flights = [flight]
    while True:
        time, speed = landing(flights[-1])
        up_speed = speed * restitution
        if 2.0 * up_speed / GRAVITY < 0.2 or time > duration_s:
            return flights
        flights.append(Flight(time, 0.0, up_speed, flight.x, 0.0))


def irregular_tosses(seed: int, num_frames: int, frame_rate: float) -> HeldOutClip:
    rng = np.random.default_rng(seed)
    duration_s = num_frames / frame_rate
    material, room = _pick(rng, MATERIALS), _pick(rng, ROOMS)
    restitution, x = RESTITUTION[material], float(rng.uniform(0.3, 0.7))
    # The ball drops in first (as the world's balls do), then is tossed again each time it has come to rest.
    drop = Flight(float(rng.uniform(-0.4, 0.2)), float(rng.uniform(0.6, 1.0)), 0.0, x, 0.0)
    flights = _bounces_from(drop, restitution, duration_s)
    start = landing(flights[-1])[0] + float(np.clip(rng.lognormal(np.log(0.35), 0.8), 0.05, 2.0))
    while start < duration_s - 0.25:
        flights += _bounces_from(Flight(start, 0.0, float(rng.uniform(0.7, 2.6)), x, 0.0), restitution, duration_s)
        rest, _ = landing(flights[-1])
        start = rest + float(np.clip(rng.lognormal(np.log(0.35), 0.8), 0.05, 2.0))
    ball = Ball(_pick(rng, COLOURS), _pick(rng, SIZES), x, 0.0, 0.0, flights=tuple(flights))
    clip = render_clip(Scene((ball,), material, room), 128, 128, num_frames, frame_rate, seed=seed)
    onsets = np.array([impact.time for impact in clip.impacts if impact.time >= 0])
    return HeldOutClip(f"tosses {seed}", clip.audio, onsets, clip.caption, clip.frames)


def _drum_hit(voice: str, rng: np.random.Generator) -> np.ndarray:
    time = np.arange(int(0.35 * SAMPLE_RATE)) / SAMPLE_RATE
    if voice == "kick":  # two-operator FM with a falling carrier
        carrier = 55.0 + 95.0 * np.exp(-time / 0.02)
        modulator = 1.5 * np.exp(-time / 0.01) * np.sin(2 * np.pi * 2.1 * np.cumsum(carrier) / SAMPLE_RATE)
        sound = np.sin(2 * np.pi * np.cumsum(carrier) / SAMPLE_RATE + modulator) * np.exp(-time / 0.09)
    elif voice == "snare":  # two tones and noise band-passed by a difference of moving averages
        noise = rng.standard_normal(len(time))
        band = np.convolve(noise, np.ones(3) / 3, "same") - np.convolve(noise, np.ones(12) / 12, "same")
        sound = (np.sin(2 * np.pi * 180 * time) + 0.6 * np.sin(2 * np.pi * 330 * time)) * np.exp(-time / 0.04)
        sound = 0.5 * sound + 1.2 * band * np.exp(-time / 0.07)
    else:  # six square waves at inharmonic frequencies, differentiated: a metallic hi-hat
        squares = sum(np.sign(np.sin(2 * np.pi * f * time)) for f in (205, 304, 369, 522, 540, 800))
        sound = np.diff(squares, prepend=0.0) * np.exp(-time / 0.025)
    return sound / np.abs(sound).max()


def drum_pattern(seed: int, tempo_bpm: float, num_frames: int, frame_rate: float, bar: str = "rock") -> HeldOutClip:
    rng = np.random.default_rng(seed)
    duration_s = num_frames / frame_rate
    num_samples = int(round(duration_s * SAMPLE_RATE))
    step_s = 60.0 / tempo_bpm / 4
    hits: list[tuple[float, str]] = []
    for step in range(int(duration_s / step_s) + 1):
        for voice, steps in zip(("kick", "snare", "hihat"), DRUM_BARS[bar], strict=True):
            if step % 16 in steps and step * step_s < duration_s - 0.05:
                hits.append((step * step_s + 0.1, voice))
    dry = np.zeros(num_samples)
    gains = {"kick": 0.45, "snare": 0.35, "hihat": 0.15}
    for time, voice in hits:
        sound = gains[voice] * rng.uniform(0.85, 1.0) * _drum_hit(voice, rng)
        start = int(round(time * SAMPLE_RATE))
        if start >= num_samples:
            continue
        stop = min(start + len(sound), num_samples)
        dry[start:stop] += sound[: stop - start]
    room = _pick(rng, ROOMS)
    response = room_impulse_response(room, SAMPLE_RATE, rng)
    audio = np.clip(dry + np.convolve(dry, response)[:num_samples], -1, 1).astype(np.float32)
    times = sorted({round(time, 6) for time, _ in hits if time < duration_s})
    onsets = np.array([t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > ONSET_MERGE_S])
    scene = scene_from_onsets(onsets, rng, _pick(rng, MATERIALS), room, sound="drums")
    truth = render_clip(scene, 128, 128, num_frames, frame_rate, seed=seed)
    return HeldOutClip(f"{bar} {tempo_bpm:g} bpm", audio, onsets, caption(scene), truth.frames)


def hummed_voice(seed: int, num_frames: int, frame_rate: float) -> HeldOutClip:
    rng = np.random.default_rng(seed)
    num_samples = int(round(num_frames / frame_rate * SAMPLE_RATE))
    times = np.arange(num_samples) / SAMPLE_RATE
    envelope = np.zeros(num_samples)
    time = float(rng.uniform(0.1, 0.3))
    while time < times[-1]:
        length = float(rng.uniform(0.15, 0.45))
        inside = (times >= time) & (times < time + length)
        elapsed = times[inside] - time
        envelope[inside] = rng.uniform(0.4, 1.0) * (1 - np.exp(-elapsed / 0.02)) * np.exp(-elapsed / (length / 2))
        time += length + float(rng.exponential(0.25))
    noise = rng.standard_normal(num_samples)
    centre = float(rng.uniform(600, 1400))  # a whispered vowel: noise through a resonance made of two averages
    width = max(int(SAMPLE_RATE / centre / 2), 2)
    source = np.convolve(noise, np.ones(width) / width, "same") - np.convolve(
        noise, np.ones(4 * width) / (4 * width), "same"
    )
    audio = 0.3 * source * envelope / max(np.abs(source * envelope).max(), 1e-9)
    material, room = _pick(rng, MATERIALS), _pick(rng, ROOMS)
    scene = Scene((), material, room, pulse=Pulse(_pick(rng, COLOURS), _pick(rng, SIZES), 0.5, 0))
    return HeldOutClip(f"whispered voice {seed}", audio.astype(np.float32), np.array([]), caption(scene), None)


def voice_caption(seed: int) -> str:
    """A pulsing-light caption in the world's words for a voice recorded elsewhere (the bundled espeak clip)."""
    rng = np.random.default_rng(seed)
    pulse = Pulse(_pick(rng, COLOURS), _pick(rng, SIZES), 0.5, 0)
    return caption(Scene((), _pick(rng, MATERIALS), _pick(rng, ROOMS), pulse=pulse))
