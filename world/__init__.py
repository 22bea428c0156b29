"""A procedural audio-visual world with exact ground truth: balls bouncing on a floor, heard where they are seen.

`generate_clip(seed)` returns frames, 16 kHz audio, a caption in the LTX prompting guide's style and the list of
impacts (time, frame, sample, ball, material, room); `world.detectors` measures the same things back from any clip.
`generate_training_clip(seed)` draws from a richer world (`world.events`, `world.voice`): balls coming in at any
moment, contacts on another generator's rhythm with impact or drum sounds, a light pulsing with a voice.
"""

from world.clip import (
    TRAINING_FRAME_RATES,
    WORLD_VOCABULARY,
    Clip,
    Impact,
    caption,
    cut_clip,
    generate_clip,
    generate_training_clip,
    render_clip,
)
from world.scene import COLOURS, MATERIALS, ROOMS, SIZES, Ball, Flight, Pulse, Scene, sample_scene
from world.sound import SAMPLE_RATE

__all__ = [
    "COLOURS",
    "MATERIALS",
    "ROOMS",
    "SAMPLE_RATE",
    "SIZES",
    "TRAINING_FRAME_RATES",
    "WORLD_VOCABULARY",
    "Ball",
    "Clip",
    "Flight",
    "Pulse",
    "Impact",
    "Scene",
    "caption",
    "cut_clip",
    "generate_clip",
    "generate_training_clip",
    "render_clip",
    "sample_scene",
]
