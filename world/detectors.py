"""Measure a clip's events and attributes back from its pixels and samples (for generated clips and ground truth).

- `visual_impacts`: frames where the colour-segmented ball is lowest, near the floor, having fallen into it.
- `audio_onsets`: energy-flux onsets.
- `ball_colour`: nearest palette hue of the ball's pixels.
- `floor_material`, `room_size`: nearest class centroid of spectral features, the centroids measured on the world's
  own rendering of every (material, ball size, room) combination.
"""

import functools

import numpy as np

from world.render import FLOOR_LINE
from world.scene import COLOURS, IMPACT_SPEED_BANDS, MATERIALS, ROOMS, SIZES, sample_scene, scene_contacts
from world.sound import SAMPLE_RATE, render_audio
from world.voice import loudness

BALL_MIN_SATURATION = 0.35  # walls and floors are greyer than this, balls far more saturated
BALL_MIN_VALUE = 0.35  # the dark hall's walls are darker than this
MIN_BALL_PIXELS = 2
IMPACT_PROMINENCE = 0.008  # fraction of the frame height the ball must rise on one side of a contact frame
IMPACT_FLOOR_TOLERANCE = 0.05  # fraction of the frame height: how far above the floor a contact may be seen
# A ball that lands and stays: its centroid moves by at most IMPACT_PROMINENCE over this many frames after landing
# (a decoder jitters a resting ball by a fraction of a pixel; the world's own renders keep it still).
REST_FRAMES = 3
# One contact per landing: contacts are at least scene.MIN_FLIGHT_S (4.8 frames at 24 fps) apart.
CONTACT_MIN_GAP_FRAMES = 3

ONSET_WINDOW = 256  # samples (16 ms at 16 kHz), Hann
ONSET_HOP = 64  # samples (4 ms)
ONSET_BANDS = 8  # octave-spaced
ONSET_PAST_HOPS = (2, 10)  # a window is compared with the maxima over these hops before it
ONSET_MIN_FLUX_DB = 4.0  # mean rise over the bands; tuned on ground-truth clips (recall 0.997 on 60 clips)
ONSET_FLOOR_DB = -50.0  # relative to the clip's loudest window
ONSET_MIN_GAP_S = 0.06
FEATURE_BANDS = 16  # log-spaced bands from 100 Hz to 8 kHz
CALIBRATION_CLIPS_PER_CLASS = 8


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling of (samples,) or (samples, channels) audio by FFT."""
    if source_rate == target_rate:
        return audio
    num_samples = int(round(audio.shape[0] * target_rate / source_rate))
    spectrum = np.fft.rfft(audio, axis=0)
    bins = num_samples // 2 + 1
    if bins <= spectrum.shape[0]:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros((bins - spectrum.shape[0],) + spectrum.shape[1:])], axis=0)
    return (np.fft.irfft(spectrum, num_samples, axis=0) * num_samples / audio.shape[0]).astype(np.float32)


def _mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=1) if audio.ndim == 2 else audio


# --- Video -------------------------------------------------------------------------------------------------------


def _hsv(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb = frames.astype(np.float32) / 255.0
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(
        value == red,
        ((green - blue) / safe) % 6,
        np.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    return hue * 60.0, saturation, value


def ball_mask(frames: np.ndarray) -> np.ndarray:
    """(F, H, W) bool: saturated, lit pixels above the floor."""
    _, saturation, value = _hsv(frames)
    mask = (saturation > BALL_MIN_SATURATION) & (value > BALL_MIN_VALUE)
    mask[:, int(np.ceil(FLOOR_LINE * frames.shape[1])) :] = False
    return mask


def ball_rows(frames: np.ndarray) -> np.ndarray:
    """(F,) centroid row of the ball pixels in each frame (NaN where none are seen)."""
    mask = ball_mask(frames)
    counts = mask.sum(axis=(1, 2))
    rows = np.arange(frames.shape[1], dtype=np.float64)[None, :, None] + 0.5
    centroid = (mask * rows).sum(axis=(1, 2)) / np.maximum(counts, 1)
    return np.where(counts >= MIN_BALL_PIXELS, centroid, np.nan)


def visual_impacts(frames: np.ndarray, frame_rate: float) -> np.ndarray:
    """Times (s) of frames where the ball is at a local lowest point close to the floor, or lands there and stays."""
    height = frames.shape[1]
    rows = ball_rows(frames)
    mask = ball_mask(frames)
    # Lowest ball pixel per frame: the ball must be near the floor for a contact.
    any_rows = mask.any(axis=2)
    bottom = np.where(any_rows.any(axis=1), height - 1 - np.argmax(any_rows[:, ::-1], axis=1), -1)
    floor = FLOOR_LINE * height
    prominence = IMPACT_PROMINENCE * height
    times, last_contact = [], -CONTACT_MIN_GAP_FRAMES
    for index in range(1, len(rows) - 1):
        here, before, after = rows[index], rows[index - 1], rows[index + 1]
        if np.isnan(here) or np.isnan(before) or np.isnan(after) or index - last_contact < CONTACT_MIN_GAP_FRAMES:
            continue
        fell = here - np.nanmin(rows[max(index - 3, 0) : index]) > prominence
        if not fell or bottom[index] < floor - 1 - (IMPACT_FLOOR_TOLERANCE * height):
            continue
        # A bounce: the lowest point, the ball rising again after it (or the clip ending).
        lowest = here >= before and here >= after
        rose = here - np.nanmin(rows[index + 1 : index + 4]) > prominence
        # Coming to rest: the ball stays where it landed.
        staying = rows[index : index + REST_FRAMES + 1]
        resting = len(staying) == REST_FRAMES + 1 and np.ptp(staying) <= prominence
        if (lowest and (rose or index >= len(rows) - 3)) or resting:
            times.append(index / frame_rate)
            last_contact = index
    return np.array(times)


def ball_colour(frames: np.ndarray) -> str | None:
    """The palette colour nearest in hue to the ball's pixels (None where no ball is seen)."""
    hue, _, _ = _hsv(frames)
    mask = ball_mask(frames)
    if mask.sum() < MIN_BALL_PIXELS:
        return None
    angles = np.deg2rad(hue[mask])
    mean_hue = np.rad2deg(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360
    palette_hues = {name: _hsv(np.array([[colour]], dtype=np.uint8))[0][0, 0] for name, colour in COLOURS.items()}
    distance = {name: min(abs(mean_hue - h), 360 - abs(mean_hue - h)) for name, h in palette_hues.items()}
    return min(distance, key=distance.get)


# --- Audio -------------------------------------------------------------------------------------------------------


def _window_energy_db(audio: np.ndarray) -> np.ndarray:
    mono = _mono(audio).astype(np.float64)
    num_windows = max((len(mono) - ONSET_WINDOW) // ONSET_HOP + 1, 0)
    indices = np.arange(num_windows)[:, None] * ONSET_HOP + np.arange(ONSET_WINDOW)[None, :]  # (windows, samples)
    energy = (mono[indices] ** 2).mean(axis=1)
    return 10 * np.log10(energy + 1e-12)


def _onset_band_energy_db(mono: np.ndarray) -> np.ndarray:
    """(windows, bands) log energies of an STFT pooled into octave bands."""
    num_windows = max((len(mono) - ONSET_WINDOW) // ONSET_HOP + 1, 0)
    indices = np.arange(num_windows)[:, None] * ONSET_HOP + np.arange(ONSET_WINDOW)[None, :]
    power = np.abs(np.fft.rfft(mono[indices] * np.hanning(ONSET_WINDOW), axis=1)) ** 2
    edges = np.unique(np.geomspace(2, ONSET_WINDOW // 2, ONSET_BANDS + 1).astype(int))
    bands = np.stack(
        [power[:, low:high].mean(axis=1) for low, high in zip(edges[:-1], edges[1:], strict=True)], axis=1
    )
    return 10 * np.log10(bands + 1e-10)


def audio_onsets(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Times (s) of spectral-flux onsets: the mean rise, over octave bands, of each band's energy above its maximum
    over the preceding ONSET_PAST_HOPS (so a reverberant tail's flicker does not count as a new event)."""
    mono = _mono(resample(np.asarray(audio, dtype=np.float32), sampling_rate, SAMPLE_RATE)).astype(np.float64)
    bands = _onset_band_energy_db(mono)
    if len(bands) <= ONSET_PAST_HOPS[1]:
        return np.array([])
    total = 10 * np.log10((10 ** (bands / 10)).sum(axis=1))
    nearest, farthest = ONSET_PAST_HOPS
    flux = np.full(len(bands), -np.inf)
    for index in range(farthest, len(bands)):
        past = bands[index - farthest : index - nearest + 1].max(axis=0)
        flux[index] = np.clip(bands[index] - past, 0.0, None).mean()
    loud_enough = total > total.max() + ONSET_FLOOR_DB
    times: list[float] = []
    for index in np.flatnonzero((flux > ONSET_MIN_FLUX_DB) & loud_enough):
        if flux[index] < flux[max(index - 3, 0) : index + 4].max():
            continue
        time = (index * ONSET_HOP + ONSET_WINDOW / 2) / SAMPLE_RATE  # the window's centre
        if times and time - times[-1] < ONSET_MIN_GAP_S:
            continue
        times.append(time)
    return np.array(times)


def _band_edges(sampling_rate: int, n_fft: int) -> np.ndarray:
    edges_hz = np.geomspace(100.0, 8_000.0, FEATURE_BANDS + 1)
    return np.clip(np.round(edges_hz / sampling_rate * n_fft).astype(int), 1, n_fft // 2)


def _band_log_energy(segment: np.ndarray) -> np.ndarray:
    n_fft = 2048
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n_fft)) ** 2
    edges = _band_edges(SAMPLE_RATE, n_fft)
    bands = np.array(
        [spectrum[low : max(high, low + 1)].mean() for low, high in zip(edges[:-1], edges[1:], strict=True)]
    )
    return 10 * np.log10(bands + 1e-12)


def _sounding_samples(audio: np.ndarray) -> int:
    """How many samples `audio` has up to its last one that is not exactly zero. A clip padded with digital silence to
    its exact length (the pipelines pad the ~30 ms the causal audio VAE decodes short) must not read as a sudden,
    total decay: with the last 32 ms of the world's own clips zeroed, 7 of 24 were heard as wood in a small room."""
    sounding = np.flatnonzero(np.abs(_mono(audio)) > 0)
    return int(sounding[-1]) + 1 if len(sounding) else 0


def sound_features(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Timbre and decay of the impacts: band energies of the attack, of 60-150 ms and 200-500 ms after each onset
    (relative to the attack), and how fast the energy falls after the last onset. None where no onset is heard."""
    audio = np.asarray(audio, dtype=np.float32)
    sounding = round(_sounding_samples(audio) * SAMPLE_RATE / sampling_rate)
    audio = _mono(resample(audio, sampling_rate, SAMPLE_RATE)).astype(np.float64)[:sounding]
    onsets = audio_onsets(audio, SAMPLE_RATE)
    if len(onsets) == 0:
        return None
    attacks, middles, lates = [], [], []
    for onset in onsets:
        start = int(onset * SAMPLE_RATE)
        segments = [
            audio[start + int(a * SAMPLE_RATE) : start + int(b * SAMPLE_RATE)]
            for a, b in ((0.0, 0.04), (0.06, 0.15), (0.2, 0.5))
        ]
        if min(len(segment) for segment in segments) < 256:
            continue
        attack = _band_log_energy(segments[0])
        attacks.append(attack)
        middles.append(_band_log_energy(segments[1]) - attack)
        lates.append(_band_log_energy(segments[2]) - attack)
    if not attacks:
        return None
    attack = np.mean(attacks, axis=0)
    energy = _window_energy_db(audio)
    last = int(onsets[-1] * SAMPLE_RATE / ONSET_HOP)
    tail = energy[last : last + int(0.6 * SAMPLE_RATE / ONSET_HOP)]
    decay_db_per_s = np.polyfit(np.arange(len(tail)) * ONSET_HOP / SAMPLE_RATE, tail, 1)[0] if len(tail) > 4 else 0
    return np.concatenate(
        [attack - attack.mean(), np.mean(middles, axis=0), np.mean(lates, axis=0), [decay_db_per_s / 10.0]]
    )


@functools.lru_cache(maxsize=1)
def _class_centroids() -> tuple[list[tuple[str, str, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Mean features of each (material, size, room) class over calibration scenes rendered by the world itself."""
    duration_s, classes, centroids, all_features = 4.0, [], [], []
    for material in MATERIALS:
        for size in SIZES:
            for room in ROOMS:
                features = []
                for index in range(CALIBRATION_CLIPS_PER_CLASS):
                    scene = sample_scene(10_000 + index, material=material, size=size, room=room)
                    audio = render_audio(
                        scene, scene_contacts(scene, duration_s), int(duration_s * SAMPLE_RATE), seed=10_000 + index
                    )
                    feature = sound_features(audio)
                    if feature is not None:
                        features.append(feature)
                classes.append((material, size, room))
                centroids.append(np.mean(features, axis=0))
                all_features.extend(features)
    stacked = np.array(all_features)
    return classes, np.array(centroids), stacked.mean(axis=0), stacked.std(axis=0) + 1e-6


def classify_sound(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> tuple[str, str] | None:
    """(floor material, room) of the nearest calibration class; None where no impact is heard."""
    features = sound_features(audio, sampling_rate)
    if features is None:
        return None
    classes, centroids, mean, std = _class_centroids()
    distances = (((features - mean) / std - (centroids - mean) / std) ** 2).sum(axis=1)
    material, _, room = classes[int(np.argmin(distances))]
    return material, room


def floor_material(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> str | None:
    result = classify_sound(audio, sampling_rate)
    return None if result is None else result[0]


def room_size(audio: np.ndarray, sampling_rate: int = SAMPLE_RATE) -> str | None:
    result = classify_sound(audio, sampling_rate)
    return None if result is None else result[1]


def match_events(reference: np.ndarray, candidates: np.ndarray, tolerance_s: float) -> tuple[np.ndarray, int]:
    """For each reference time, |nearest candidate - reference| (inf where none); and how many are within tolerance."""
    if len(reference) == 0:
        return np.array([]), 0
    if len(candidates) == 0:
        return np.full(len(reference), np.inf), 0
    errors = np.abs(np.asarray(reference)[:, None] - np.asarray(candidates)[None, :]).min(axis=1)
    return errors, int((errors <= tolerance_s + 1e-9).sum())


def hits_by_speed(speeds: list[float], hits: list[bool]) -> list[tuple[float, float, int, int]]:
    """(low, high, impacts, hits) for each band of `scene.IMPACT_SPEED_BANDS`, from each impact's speed and whether
    it was matched."""
    bands = []
    for low, high in IMPACT_SPEED_BANDS:
        inside = [hit for speed, hit in zip(speeds, hits, strict=True) if low <= speed < high]
        bands.append((low, high, len(inside), sum(inside)))
    return bands


# --- Several balls, a pulsing light ------------------------------------------------------------------------------

LANE_GAP_COLUMNS = 3  # columns without any ball pixel in the whole clip that separate two balls' lanes


def ball_lanes(frames: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) column ranges in which ball pixels appear anywhere in the clip, split where at least
    LANE_GAP_COLUMNS columns never show one: balls that keep to their own lanes are told apart."""
    occupied = np.flatnonzero(ball_mask(frames).any(axis=(0, 1)))
    if len(occupied) == 0:
        return []
    breaks = np.flatnonzero(np.diff(occupied) > LANE_GAP_COLUMNS)
    starts = np.concatenate([[occupied[0]], occupied[breaks + 1]])
    ends = np.concatenate([occupied[breaks], [occupied[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def visual_impacts_in_lanes(frames: np.ndarray, frame_rate: float) -> np.ndarray:
    """`visual_impacts` of each ball lane (`ball_lanes`) on its own, merged in time order (contacts in two lanes
    within a frame of each other count once). For one ball it equals `visual_impacts`."""
    times = np.sort(
        np.concatenate(
            [visual_impacts(frames[:, :, start:end], frame_rate) for start, end in ball_lanes(frames)] or [[]]
        )
    )
    kept: list[float] = []
    for time in times:
        if not kept or time - kept[-1] > 1.0 / frame_rate + 1e-9:
            kept.append(float(time))
    return np.array(kept)


def pulse_sizes(frames: np.ndarray) -> np.ndarray:
    """(F,) square root of the saturated pixels above the floor in each frame: a pulsing light's radius, up to a
    constant."""
    return np.sqrt(ball_mask(frames).sum(axis=(1, 2)).astype(np.float64))


def loudness_tracking(frames: np.ndarray, frame_rate: float, audio: np.ndarray, sampling_rate: int) -> float:
    """Pearson correlation between the pulsing light's size in each frame (`pulse_sizes`) and the audio's loudness at
    that frame's instant (`world.voice.loudness`); 0 where either does not vary."""
    sizes = pulse_sizes(frames)
    levels = loudness(np.asarray(audio, np.float64), sampling_rate, np.arange(len(frames)) / frame_rate)
    if np.std(sizes) == 0 or np.std(levels) == 0:
        return 0.0
    return float(np.corrcoef(sizes, levels)[0, 1])
