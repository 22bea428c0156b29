"""The sound of a scene: one modal impact per contact, coloured by the floor, pitched by the ball, in a room.

Each impact is a few exponentially decaying sinusoids (the floor's modes, scaled by the ball's pitch) plus a short
noise burst, starting exactly at the contact sample. The room adds a reverb tail (exponentially decaying noise):
short and bright in the small room, long and dark in the large hall. The direct sound is untouched by the reverb,
so onsets stay sample-accurate.
"""

from dataclasses import dataclass

import numpy as np

from world.scene import Contact, Scene
from world.voice import speech

SAMPLE_RATE = 16_000  # Hz
BALL_PITCH_HZ: dict[str, float] = {"small": 1_000.0, "large": 520.0}  # fundamental before the floor's factor
MAX_MODE_HZ = 7_600.0  # modes above this are dropped (16 kHz audio keeps < 8 kHz)
IMPACT_GAIN = 0.12  # amplitude per unit of impact speed
PAN_WIDTH = 0.8  # stereo: 0 keeps the centre, 1 pans fully with the ball's x
DRUM_GAIN = 0.3  # peak amplitude of a drum hit
DRUM_VOICES = ("kick", "snare", "hihat")  # ball k of a drums scene plays DRUM_VOICES[k % 3]


@dataclass(frozen=True)
class FloorSound:
    pitch_factor: float  # multiplies the ball's pitch
    mode_ratios: tuple[float, ...]  # mode frequencies over the fundamental
    mode_gains: tuple[float, ...]
    mode_decays_s: tuple[float, ...]  # time for each mode to fall by 1/e
    noise_gain: float  # the click of contact
    noise_decay_s: float


FLOOR_SOUNDS: dict[str, FloorSound] = {
    "wood": FloorSound(0.55, (1.0, 1.58, 2.42), (1.0, 0.55, 0.3), (0.045, 0.03, 0.02), 0.35, 0.006),
    "metal": FloorSound(1.0, (1.0, 2.76, 5.40), (1.0, 0.7, 0.45), (0.30, 0.24, 0.16), 0.08, 0.003),
    "glass": FloorSound(2.1, (1.0, 2.32, 3.4), (1.0, 0.45, 0.25), (0.12, 0.08, 0.05), 0.05, 0.002),
    "stone": FloorSound(0.35, (1.0, 1.93), (0.45, 0.25), (0.018, 0.012), 1.0, 0.01),
}


@dataclass(frozen=True)
class RoomSound:
    reverb_time_s: float  # RT60: time for the tail to fall by 60 dB
    wet_gain: float
    pre_delay_s: float
    lowpass: float  # one-pole smoothing of the tail's noise (0 none, -> 1 darker)


ROOM_SOUNDS: dict[str, RoomSound] = {
    "small": RoomSound(reverb_time_s=0.18, wet_gain=0.25, pre_delay_s=0.004, lowpass=0.0),
    "large": RoomSound(reverb_time_s=1.6, wet_gain=0.7, pre_delay_s=0.03, lowpass=0.6),
}


def impact(material: str, ball_size: str, speed: float, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The dry sound of one contact, starting at sample 0."""
    floor = FLOOR_SOUNDS[material]
    length = int(sampling_rate * 6.0 * max(max(floor.mode_decays_s), floor.noise_decay_s))
    time = np.arange(length) / sampling_rate
    fundamental = BALL_PITCH_HZ[ball_size] * floor.pitch_factor * rng.uniform(0.98, 1.02)
    sound = np.zeros(length)
    for ratio, gain, decay in zip(floor.mode_ratios, floor.mode_gains, floor.mode_decays_s, strict=True):
        frequency = fundamental * ratio
        if frequency < MAX_MODE_HZ:
            sound += gain * np.sin(2 * np.pi * frequency * time) * np.exp(-time / decay)
    sound += floor.noise_gain * rng.standard_normal(length) * np.exp(-time / floor.noise_decay_s)
    return IMPACT_GAIN * speed * sound


def drum(voice: str, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The dry sound of one drum hit (kick: a falling sine; snare: a tone and noise; hi-hat: bright noise)."""
    time = np.arange(int(0.4 * sampling_rate)) / sampling_rate
    noise = rng.standard_normal(len(time))
    if voice == "kick":
        frequency = 45.0 + 75.0 * np.exp(-time / 0.03)
        sound = np.sin(2 * np.pi * np.cumsum(frequency) / sampling_rate) * np.exp(-time / 0.12)
        sound += 0.3 * noise * np.exp(-time / 0.003)
    elif voice == "snare":
        sound = 0.5 * np.sin(2 * np.pi * 185.0 * time) * np.exp(-time / 0.05)
        sound += 0.7 * np.diff(noise, prepend=0.0) * np.exp(-time / 0.09)
    else:
        sound = 0.6 * np.diff(noise, n=2, prepend=(0.0, 0.0)) * np.exp(-time / 0.03)
    return DRUM_GAIN * rng.uniform(0.8, 1.0) * sound / np.abs(sound).max()


def room_impulse_response(room: str, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The wet part of the room's response (the direct sound is added separately)."""
    settings = ROOM_SOUNDS[room]
    length = int(sampling_rate * settings.reverb_time_s)
    time = np.arange(length) / sampling_rate
    noise = rng.standard_normal(length)
    if settings.lowpass > 0:  # a one-pole low-pass (truncated kernel): the hall's tail is darker than its direct sound
        kernel = (1 - settings.lowpass) * settings.lowpass ** np.arange(32)
        noise = np.convolve(noise, kernel)[:length]
    tail = noise * np.exp(-6.91 * time / settings.reverb_time_s)  # -60 dB at the reverb time
    tail *= settings.wet_gain / np.sqrt(np.sum(tail**2))
    pre_delay = int(settings.pre_delay_s * sampling_rate)
    return np.concatenate([np.zeros(pre_delay), tail])


def render_audio(
    scene: Scene,
    contacts: list[Contact],
    num_samples: int,
    sampling_rate: int = SAMPLE_RATE,
    num_channels: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """(num_samples,) mono or (num_samples, 2) stereo float32 audio; impact k starts at round(time_k * rate)."""
    if num_channels not in (1, 2):
        raise ValueError(f"`num_channels` must be 1 or 2; got {num_channels}.")
    rng = np.random.default_rng(seed)
    dry = np.zeros((num_channels, num_samples))
    if scene.pulse is not None:
        dry += speech(scene.pulse.voice_seed, num_samples, sampling_rate)[None]
    for contact in contacts:
        ball = scene.balls[contact.ball]
        if scene.sound == "drums":
            sound = drum(DRUM_VOICES[contact.ball % len(DRUM_VOICES)], sampling_rate, rng)
        else:
            sound = impact(scene.material, ball.size, contact.speed, sampling_rate, rng)
        start = int(round(contact.time * sampling_rate))
        stop = min(start + len(sound), num_samples)
        if num_channels == 1:
            gains = (1.0,)
        else:  # equal-power pan following the ball across the frame
            angle = np.pi / 2 * (0.5 + PAN_WIDTH * (ball.x - 0.5))
            gains = (np.cos(angle) * np.sqrt(2), np.sin(angle) * np.sqrt(2))
        for channel, gain in enumerate(gains):
            dry[channel, start:stop] += gain * sound[: stop - start]
    response = room_impulse_response(scene.room, sampling_rate, rng)
    size = num_samples + len(response)
    wet = np.fft.irfft(np.fft.rfft(dry, size) * np.fft.rfft(response, size), size)[:, :num_samples]
    audio = np.clip(dry + wet, -1.0, 1.0).astype(np.float32)
    return audio[0] if num_channels == 1 else audio.T
