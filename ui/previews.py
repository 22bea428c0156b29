"""Turn the pipeline's step previews into what gradio widgets show: a small picture strip and a 16-bit waveform."""

import numpy as np
import PIL.Image

from ltx_pipeline import Audio

PREVIEW_FRAMES = 3  # latent frames shown: the first, the middle and the last (start, middle, end of the clip)
PREVIEW_TILE_HEIGHT = 128  # px per frame: small, like a thumbnail of the clip
PREVIEW_GAP = 4  # px of dark gutter between frames


def preview_grid(video: np.ndarray, frames: int = PREVIEW_FRAMES) -> np.ndarray:
    """(frames, h, w, 3) uint8 step previews (one frame per latent frame, `ltx_pipeline.previews`) -> one (H, W, 3)
    uint8 strip of the first, middle and last frame.

    Each frame is scaled smoothly (bilinear) to a small thumbnail, so a coarse preview (a colour per latent token, for
    VAEs without a fitted decoder) reads as a blurred picture of the clip, not as a mosaic of coloured tiles.
    """
    num_frames, height, width, _ = video.shape
    picks = sorted({0, num_frames // 2, num_frames - 1})[:frames]
    tile_width = max(1, round(width * PREVIEW_TILE_HEIGHT / height))
    tiles = [
        np.asarray(PIL.Image.fromarray(video[index]).resize((tile_width, PREVIEW_TILE_HEIGHT), PIL.Image.BILINEAR))
        for index in picks
    ]
    strip = np.full(
        (PREVIEW_TILE_HEIGHT, len(tiles) * tile_width + (len(tiles) - 1) * PREVIEW_GAP, 3), 24, dtype=np.uint8
    )
    for position, tile in enumerate(tiles):
        left = position * (tile_width + PREVIEW_GAP)
        strip[:, left : left + tile_width] = tile
    return strip


def audio_for_widget(audio: Audio) -> tuple[int, np.ndarray]:
    """An `Audio` as gr.Audio's numpy value: (sample rate, (samples, channels) int16)."""
    waveform = audio.waveform.detach().float().cpu().clamp(-1.0, 1.0).numpy()  # (channels, samples)
    return audio.sampling_rate, (waveform.T * 32767.0).round().astype(np.int16)
