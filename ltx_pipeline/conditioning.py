"""Image conditioning: stills placed at a frame of the clip with a strength, as the reference pipelines do.

Each image is resized to cover the stage's frame and centre-cropped, re-compressed with H.264 so a photo looks
like a video frame to the model, and encoded by the video VAE. As in the reference's two-stage pipelines
(`combined_image_conditionings`), a still at frame 0 is written over the first latent frame's tokens, and a still at
a later frame becomes tokens of its own appended to the clip at that frame's time (`VideoConditionByKeyframeIndex`),
dropped again after each stage. Their denoise mask is `1 - strength` (`engine.streams`): they see a lowered noise
level (`sigma * (1 - strength)`) and their clean estimate is pulled back to the image's latents by `strength`.
"""

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf

from . import constants

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageCondition:
    """A still to hold at `frame_index` (0 = the first frame: image to video) with `strength` in [0, 1]."""

    image: str | os.PathLike | PIL.Image.Image | np.ndarray
    frame_index: int = 0
    strength: float = 1.0


def load_image(image: str | os.PathLike | PIL.Image.Image | np.ndarray, name: str = "image") -> PIL.Image.Image:
    """An RGB PIL image from a path, a PIL image or an (H, W, 3) uint8 array; clear errors otherwise."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"`{name}` as an array must be (height, width, 3) uint8; got {image.shape} {image.dtype}."
            )
        return PIL.Image.fromarray(image)
    if not isinstance(image, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be an image file path, a PIL image or an array; got {type(image).__name__}.")
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"`{name}` file not found: {path}")
    try:
        with PIL.Image.open(path) as opened:
            opened.load()
            return opened.convert("RGB")
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"`{name}` {path.name} is not a readable image (PNG, JPEG, WebP, ...): {error}") from error


def check_image_conditions(conditions: list[ImageCondition], num_frames: int) -> None:
    for index, condition in enumerate(conditions):
        if not isinstance(condition, ImageCondition):
            raise ValueError(f"`images[{index}]` must be an ImageCondition; got {type(condition).__name__}.")
        frame = condition.frame_index
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < num_frames:
            raise ValueError(
                f"`images[{index}].frame_index` must be a frame of the clip, 0 to {num_frames - 1}; got {frame!r}."
            )
        strength = condition.strength
        if (
            isinstance(strength, bool)
            or not isinstance(strength, (int, float))
            or not math.isfinite(strength)
            or not 0 <= strength <= 1
        ):
            raise ValueError(f"`images[{index}].strength` must be a number from 0 to 1; got {strength!r}.")


def aspect_notice(image: PIL.Image.Image, height: int, width: int) -> str | None:
    """A sentence for the user when the image will lose a noticeable part to the centre crop, else None."""
    image_ratio, frame_ratio = image.width / image.height, width / height
    if abs(image_ratio / frame_ratio - 1) <= constants.IMAGE_ASPECT_NOTICE:
        return None
    kept = min(image_ratio, frame_ratio) / max(image_ratio, frame_ratio)
    side = "left and right" if image_ratio > frame_ratio else "top and bottom"
    return (
        f"The image ({image.width}x{image.height}) is cropped at the {side} to fit the {width}x{height} frame; "
        f"{kept:.0%} of it is kept."
    )


def prepare_image(
    image: PIL.Image.Image, height: int, width: int, crf: int = constants.IMAGE_CONDITIONING_CRF
) -> torch.Tensor:
    """Resize to cover, centre-crop, H.264 re-compress at `crf` (the model generation's: 33 before LTX-2.5, 18 for
    it) -> (1, 3, 1, height, width) in [-1, 1]."""
    scale = max(width / image.width, height / image.height)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))), PIL.Image.LANCZOS
    )
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    pixels = np.asarray(resized.crop((left, top, left + width, top + height)), dtype=np.uint8)
    pixels = apply_image_conditioning_crf(pixels, crf)  # diffusers' port of the reference
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).float() / 127.5 - 1
    # (H, W, 3) -> (1, 3, 1, H, W)
    return tensor.permute(2, 0, 1)[None, :, None]


def latent_frame_of(frame_index: int, temporal_compression: int) -> int:
    """The latent frame holding pixel frame `frame_index`: frame 0 alone, then groups of `temporal_compression`."""
    return (frame_index + temporal_compression - 1) // temporal_compression
