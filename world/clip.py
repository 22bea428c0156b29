"""One clip of the world: frames, audio, caption and the exact impact list."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from world.detectors import resample
from world.events import sample_event_scene, sample_pulse_scene, sample_rhythm_scene
from world.render import render_frames
from world.scene import Scene, sample_scene, scene_contacts
from world.sound import SAMPLE_RATE, render_audio

MATERIAL_SOUND_WORDS: dict[str, str] = {
    "wood": "hollow knocks",
    "metal": "ringing clanks",
    "glass": "bright clinks",
    "stone": "dull thuds",
}
ROOM_WORDS: dict[str, str] = {"small": "a small bright room", "large": "a large dark hall"}
ECHO_WORDS: dict[str, str] = {"small": "short echoes", "large": "long echoes"}

# Every word a caption can hold: the embedded model's tokenizer knows these whole.
WORLD_VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(
        "a an the and on in with of ball balls bounces bounce bouncing floor room hall small large bright dark "
        "red green blue yellow wood metal glass stone hollow knocks ringing clanks clinks dull thuds short long "
        "echoes echo".split()
        # Added with the scenes of `world.events` (after the first words, so that those keep their token ids):
        + "light pulses voice above speech to drum beat hits".split()
    )
)
# How often the training data draws each kind of clip (`generate_training_clip`): the original world (balls released
# from rest), balls coming in at any moment, balls on another generator's rhythm with impact or drum sounds, a light
# pulsing with a voice.
TRAINING_CLIP_KINDS: dict[str, float] = {
    "released": 0.35,
    "events": 0.2,
    "rhythm_impacts": 0.15,
    "rhythm_drums": 0.15,
    "pulse": 0.15,
}
TRAINING_FRAME_RATES = (24.0, 25.0, 30.0)  # fps the embedded model is trained at


@dataclass(frozen=True)
class Impact:
    """One ball meeting the floor, as seen and heard."""

    time: float  # seconds, exact contact instant
    frame: int  # video frame nearest the contact: round(time * frame_rate)
    sample: int  # audio sample where the impact sound starts: round(time * sampling_rate)
    ball: int  # index into the scene's balls
    colour: str
    size: str
    material: str
    room: str
    speed: float  # impact speed, travel heights per second


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (num_frames, height, width, 3) uint8
    audio: np.ndarray  # (num_samples,) mono or (num_samples, 2) stereo, float32 in [-1, 1]
    sampling_rate: int  # Hz
    frame_rate: float  # frames per second
    caption: str
    impacts: tuple[Impact, ...]
    scene: Scene

    @property
    def duration_s(self) -> float:
        return self.frames.shape[0] / self.frame_rate


def caption(scene: Scene) -> str:
    """One sentence naming the source, the material and the space, as the LTX prompting guide recommends."""
    if scene.pulse is not None:
        return (
            f"a {scene.pulse.size} {scene.pulse.colour} light pulses with a voice above a {scene.material} floor in "
            f"{ROOM_WORDS[scene.room]}, speech with {ECHO_WORDS[scene.room]}"
        )
    balls = [f"a {ball.size} {ball.colour} ball" for ball in scene.balls]
    verb = "bounces" if len(balls) == 1 else "bounce"
    if scene.sound == "drums":
        return (
            f"{' and '.join(balls)} {verb} to a drum beat on a {scene.material} floor in {ROOM_WORDS[scene.room]}, "
            f"drum hits with {ECHO_WORDS[scene.room]}"
        )
    return (
        f"{' and '.join(balls)} {verb} on a {scene.material} floor in {ROOM_WORDS[scene.room]}, "
        f"{MATERIAL_SOUND_WORDS[scene.material]} with {ECHO_WORDS[scene.room]}"
    )


def render_clip(
    scene: Scene,
    height: int = 128,
    width: int = 128,
    num_frames: int = 97,
    frame_rate: float = 24.0,
    sampling_rate: int = SAMPLE_RATE,
    num_channels: int = 1,
    seed: int = 0,
) -> Clip:
    """Render `scene`; `seed` only draws the sound's fine detail (noise bursts, pitch jitter, reverb noise)."""
    for name, value in (("height", height), ("width", width), ("num_frames", num_frames)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    if frame_rate <= 0:
        raise ValueError(f"`frame_rate` must be > 0; got {frame_rate}.")
    if sampling_rate < 16_000:
        raise ValueError(f"`sampling_rate` must be >= 16000 Hz (the impacts reach 7.6 kHz); got {sampling_rate}.")
    duration_s = num_frames / frame_rate
    num_samples = int(round(duration_s * sampling_rate))
    contacts = scene_contacts(scene, duration_s)
    impacts = tuple(
        Impact(
            time=contact.time,
            frame=int(round(contact.time * frame_rate)),
            sample=int(round(contact.time * sampling_rate)),
            ball=contact.ball,
            colour=scene.balls[contact.ball].colour,
            size=scene.balls[contact.ball].size,
            material=scene.material,
            room=scene.room,
            speed=contact.speed,
        )
        for contact in contacts
        if int(round(contact.time * frame_rate)) < num_frames
    )
    audio = render_audio(scene, contacts, num_samples, sampling_rate, num_channels, seed=seed)
    heard = None
    if scene.pulse is not None:  # the light follows the sound as heard (16 kHz mono)
        mono = audio if audio.ndim == 1 else audio.mean(axis=1)
        heard = resample(mono, sampling_rate, SAMPLE_RATE)
    return Clip(
        frames=render_frames(scene, height, width, num_frames, frame_rate, heard),
        audio=audio,
        sampling_rate=sampling_rate,
        frame_rate=float(frame_rate),
        caption=caption(scene),
        impacts=impacts,
        scene=scene,
    )


def generate_clip(
    seed: int,
    height: int = 128,
    width: int = 128,
    num_frames: int = 97,
    frame_rate: float = 24.0,
    sampling_rate: int = SAMPLE_RATE,
    num_channels: int = 1,
    num_balls: int = 1,
    start_frame: int = 0,
    cut: bool = True,
    **attributes: str,
) -> Clip:
    """A clip drawn from `seed` (same seed, same clip); `attributes` may fix colour, size, material or room.
    `start_frame` > 0 cuts it from that frame of the scene on (`cut_clip`): the balls are already falling; with
    `cut=False` it returns the scene it cuts from, uncut (frame 0 to one frame past the clip's end)."""
    scene = sample_scene(seed, num_balls=num_balls, **attributes)
    if not start_frame:
        return render_clip(scene, height, width, num_frames, frame_rate, sampling_rate, num_channels, seed=seed)
    longer = render_clip(
        scene, height, width, start_frame + num_frames + 1, frame_rate, sampling_rate, num_channels, seed=seed
    )
    return cut_clip(longer, start_frame, num_frames) if cut else longer


def sample_training_scene(seed: int, duration_s: float) -> Scene:
    """A scene of one of TRAINING_CLIP_KINDS, drawn with their shares from `seed`."""
    rng = np.random.default_rng(seed + 7_919)  # a stream apart from the one each kind draws its scene with
    kind = rng.choice(list(TRAINING_CLIP_KINDS), p=list(TRAINING_CLIP_KINDS.values()))
    if kind == "released":
        return sample_scene(seed, num_balls=int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])))
    if kind == "events":
        return sample_event_scene(seed, duration_s)
    if kind == "pulse":
        return sample_pulse_scene(seed)
    return sample_rhythm_scene(seed, duration_s, sound="drums" if kind == "rhythm_drums" else "impacts")


def generate_training_clip(
    seed: int,
    height: int = 128,
    width: int = 128,
    num_frames: int = 97,
    frame_rate: float = 24.0,
    start_frame: int = 0,
    cut: bool = True,
) -> Clip:
    """A training clip of the richer world (`sample_training_scene`) at `frame_rate`; same seed, same clip.
    `start_frame` > 0 cuts it from that frame of the scene on (`cut_clip`), which then lasts that much longer; with
    `cut=False` it returns the scene it cuts from, uncut (frame 0 to one frame past the clip's end)."""
    scene = sample_training_scene(seed, (start_frame + num_frames) / frame_rate)
    if not start_frame:  # bit-identical to the clips every earlier run trained on
        return render_clip(scene, height, width, num_frames, frame_rate, seed=seed)
    longer = render_clip(scene, height, width, start_frame + num_frames + 1, frame_rate, seed=seed)
    return cut_clip(longer, start_frame, num_frames) if cut else longer


def cut_clip(clip: Clip, start_frame: int, num_frames: int | None = None) -> Clip:
    """The part of `clip` from frame `start_frame` on (`num_frames` of them; default: all but the last, so that the
    audio keeps its full length): a clip that starts mid-scene, the ball already in flight or bouncing, as every
    window of a long run after the first does. Its impacts are those from `start_frame` on, their time, frame and
    sample counted from the cut; the audio is cut at the sample nearest the cut's instant."""
    if not isinstance(start_frame, int) or not 0 <= start_frame < clip.frames.shape[0]:
        raise ValueError(f"`start_frame` must be an int in [0, {clip.frames.shape[0]}); got {start_frame!r}.")
    num_frames = clip.frames.shape[0] - start_frame - 1 if num_frames is None else num_frames
    if not 1 <= start_frame + num_frames <= clip.frames.shape[0]:
        raise ValueError(f"`num_frames` must be in [1, {clip.frames.shape[0] - start_frame}]; got {num_frames}.")
    start_s = start_frame / clip.frame_rate
    first_sample = int(round(start_s * clip.sampling_rate))
    num_samples = int(round(num_frames / clip.frame_rate * clip.sampling_rate))
    audio = clip.audio[first_sample : first_sample + num_samples]
    if audio.shape[0] < num_samples:  # only where the clip itself ends there
        audio = np.concatenate([audio, np.zeros((num_samples - audio.shape[0], *audio.shape[1:]), audio.dtype)])
    impacts = tuple(
        dataclasses.replace(
            impact,
            time=impact.time - start_s,
            frame=impact.frame - start_frame,
            sample=int(round((impact.time - start_s) * clip.sampling_rate)),
        )
        for impact in clip.impacts
        if 0 <= impact.frame - start_frame < num_frames
    )
    return dataclasses.replace(
        clip, frames=clip.frames[start_frame : start_frame + num_frames].copy(), audio=audio.copy(), impacts=impacts
    )
