"""Make the short audio clips the studio offers as examples.

Every clip is synthesised here, so the project owns all of it: a click track, a drum pattern, a tone sweep and a
spoken sentence (espeak-ng, `apt-get install -y espeak-ng`), and the impacts of one scene of the project's
bouncing-ball world (the data the embedded model learned from). The generated files are committed, so nothing here
runs when the app starts; rerun this script only to change a clip:

    python examples/make_examples.py            # writes examples/audio/*.wav
"""

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000  # Hz; what the audio front end resamples to anyway, and it keeps the files small
CLIP_SECONDS = 4.0  # long enough for the 97-frame default at 25 fps (3.88 s)
TEMPO_BPM = 120.0
SPEECH_TEXT = "The red ball drops onto the wooden floor, and the whole hall rings."
BALL_WORLD_SEED = 3  # a scene whose ball hits the floor several times within 97 frames

AUDIO_DIR = Path(__file__).resolve().parent / "audio"


def _decay(num_samples: int, time_constant_s: float) -> np.ndarray:
    return np.exp(-np.arange(num_samples) / (time_constant_s * SAMPLE_RATE))


def _place(track: np.ndarray, sound: np.ndarray, start_s: float) -> None:
    start = int(round(start_s * SAMPLE_RATE))
    end = min(len(track), start + len(sound))
    track[start:end] += sound[: end - start]


def click_track(seconds: float = CLIP_SECONDS, tempo_bpm: float = TEMPO_BPM) -> np.ndarray:
    """A metronome: a high click on each bar's first beat, a lower one on the others."""
    track = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float64)
    length = int(0.03 * SAMPLE_RATE)
    time = np.arange(length) / SAMPLE_RATE
    beat_s = 60.0 / tempo_bpm
    for beat in range(int(seconds / beat_s)):
        frequency = 1_800.0 if beat % 4 == 0 else 1_100.0
        _place(track, np.sin(2 * np.pi * frequency * time) * _decay(length, 0.006), beat * beat_s)
    return 0.8 * track


def drum_pattern(seconds: float = CLIP_SECONDS, tempo_bpm: float = TEMPO_BPM, seed: int = 0) -> np.ndarray:
    """Kick on 1 and 3, snare on 2 and 4, closed hi-hat on every eighth note."""
    rng = np.random.default_rng(seed)
    track = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float64)
    beat_s = 60.0 / tempo_bpm

    kick_length = int(0.25 * SAMPLE_RATE)
    kick_time = np.arange(kick_length) / SAMPLE_RATE
    kick_phase = 2 * np.pi * np.cumsum(45.0 + 110.0 * np.exp(-kick_time / 0.03)) / SAMPLE_RATE  # pitch drops
    kick = np.sin(kick_phase) * _decay(kick_length, 0.08)

    snare_length = int(0.18 * SAMPLE_RATE)
    snare_time = np.arange(snare_length) / SAMPLE_RATE
    snare = (0.6 * rng.standard_normal(snare_length) + 0.4 * np.sin(2 * np.pi * 190.0 * snare_time)) * _decay(
        snare_length, 0.045
    )

    hat_length = int(0.05 * SAMPLE_RATE)
    hat_noise = np.diff(rng.standard_normal(hat_length + 1))  # differencing tilts the noise towards the highs
    hat = 0.25 * hat_noise * _decay(hat_length, 0.012)

    for eighth in range(int(seconds / (beat_s / 2))):
        start_s = eighth * beat_s / 2
        _place(track, hat, start_s)
        if eighth % 2 == 0:
            _place(track, kick if (eighth // 2) % 2 == 0 else snare, start_s)
    return 0.9 * track / np.max(np.abs(track))


def tone_sweep(seconds: float = CLIP_SECONDS, start_hz: float = 110.0, end_hz: float = 3_520.0) -> np.ndarray:
    """An exponential sine sweep over five octaves, faded in and out."""
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rate = np.log(end_hz / start_hz) / seconds
    phase = 2 * np.pi * start_hz * (np.exp(rate * time) - 1) / rate
    fade = np.minimum(1.0, np.minimum(time, seconds - time) / 0.05)
    return 0.5 * np.sin(phase) * fade


def speech(text: str = SPEECH_TEXT) -> np.ndarray:
    """`text` spoken by espeak-ng, resampled to `SAMPLE_RATE`."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed; on Debian: apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        waveform, rate = sf.read(path, dtype="float64")
    # espeak-ng writes 22.05 kHz; linear interpolation is plenty for a speech example.
    source_time = np.arange(len(waveform)) / rate
    target_time = np.arange(int(len(waveform) * SAMPLE_RATE / rate)) / SAMPLE_RATE
    return 0.9 * np.interp(target_time, source_time, waveform) / np.max(np.abs(waveform))


def ball_world(seed: int = BALL_WORLD_SEED) -> np.ndarray:
    """The impacts of one bouncing-ball scene from the project's `world` (what the embedded model learned from)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from world import generate_clip

    clip = generate_clip(seed, material="metal", room="large", num_channels=1)
    print(f"ball_world caption: {clip.caption}")
    source_time = np.arange(len(clip.audio)) / clip.sampling_rate
    target_time = np.arange(int(len(clip.audio) * SAMPLE_RATE / clip.sampling_rate)) / SAMPLE_RATE
    return np.interp(target_time, source_time, clip.audio.astype(np.float64))


CLIPS = {
    "click_track_120bpm.wav": click_track,
    "drum_pattern_120bpm.wav": drum_pattern,
    "tone_sweep.wav": tone_sweep,
    "speech_espeak.wav": speech,
    "ball_world_metal_hall.wav": ball_world,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=AUDIO_DIR, help="folder to write the clips to")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    for name, make in CLIPS.items():
        waveform = make()
        sf.write(arguments.out / name, waveform.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        print(f"{arguments.out / name}: {len(waveform) / SAMPLE_RATE:.2f} s")


if __name__ == "__main__":
    main()
