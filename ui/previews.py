"""Turn the pipeline's step previews into what gradio widgets show: an image grid and a 16-bit waveform."""

import numpy as np

from ltx_pipeline import Audio

PREVIEW_COLUMNS = 8  # latent frames per row of the preview grid
PREVIEW_MIN_TILE_HEIGHT = 96  # px; a 1 x 1 latent frame of the embedded model is blown up to at least this
PREVIEW_MAX_TILE_HEIGHT = 192  # px; keeps the grid of a full-size model light enough to send at every step
PREVIEW_GAP = 2  # px of dark gutter between tiles


def preview_grid(video: np.ndarray, columns: int = PREVIEW_COLUMNS) -> np.ndarray:
    """(frames, h, w, 3) uint8 latent previews -> one (H, W, 3) uint8 image, frames in reading order.

    Each tile is scaled up by a whole factor (nearest neighbour), so one latent cell stays one sharp block.
    """
    num_frames, height, width, _ = video.shape
    scale = max(1, -(-PREVIEW_MIN_TILE_HEIGHT // height))  # ceil
    scale = min(scale, max(1, PREVIEW_MAX_TILE_HEIGHT // height))
    tiles = video.repeat(scale, axis=1).repeat(scale, axis=2)  # (F, h*s, w*s, 3)
    columns = min(columns, num_frames)
    rows = -(-num_frames // columns)
    tile_height, tile_width = tiles.shape[1], tiles.shape[2]
    grid = np.full(
        (rows * tile_height + (rows - 1) * PREVIEW_GAP, columns * tile_width + (columns - 1) * PREVIEW_GAP, 3),
        24,
        dtype=np.uint8,
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = row * (tile_height + PREVIEW_GAP), column * (tile_width + PREVIEW_GAP)
        grid[top : top + tile_height, left : left + tile_width] = tile
    return grid


def audio_for_widget(audio: Audio) -> tuple[int, np.ndarray]:
    """An `Audio` as gr.Audio's numpy value: (sample rate, (samples, channels) int16)."""
    waveform = audio.waveform.detach().float().cpu().clamp(-1.0, 1.0).numpy()  # (channels, samples)
    return audio.sampling_rate, (waveform.T * 32767.0).round().astype(np.int16)
