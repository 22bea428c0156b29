"""Frames of a scene, drawn with numpy: a wall coloured by the room, a textured floor, anti-aliased balls."""

import numpy as np

from world.scene import COLOURS, PULSE_RADII, RESTITUTION, SIZES, Scene, ball_columns, ball_heights
from world.sound import SAMPLE_RATE
from world.voice import loudness, speech

FLOOR_LINE = 0.78  # the floor's top edge, fraction of the frame height from the top
TOP_MARGIN = 0.04  # fraction of the frame height kept above a ball at its highest

WALL_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # (top, bottom) of a vertical gradient
    "small": ((214, 208, 192), (188, 180, 162)),  # a small bright room
    "large": ((28, 28, 40), (52, 52, 68)),  # a large dark hall
}
FLOOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "wood": (150, 100, 58),
    "metal": (150, 156, 166),
    "glass": (168, 214, 224),
    "stone": (112, 110, 104),
}
DARK_HALL_FLOOR_GAIN = 0.55  # the hall's floor is lit as dimly as its walls
PULSE_ROW = 0.4  # the pulsing light's centre, fraction of the frame height from the top
PULSE_MIN_RADIUS = 0.4  # the light's radius in silence, fraction of its largest


def floor_row(height: int) -> float:
    """The floor's top edge in pixel rows (continuous)."""
    return FLOOR_LINE * height


def ball_centre_row(height_fraction: np.ndarray, radius_px: float, height: int) -> np.ndarray:
    """Pixel row of a ball's centre for a height above the floor given as a fraction of its travel."""
    bottom_lowest = floor_row(height)
    bottom_highest = TOP_MARGIN * height + 2.0 * radius_px
    return bottom_lowest - height_fraction * (bottom_lowest - bottom_highest) - radius_px


def _background(scene: Scene, height: int, width: int) -> np.ndarray:
    rows = np.arange(height, dtype=np.float32)[:, None] / max(height - 1, 1)
    top, bottom = (np.array(colour, dtype=np.float32) for colour in WALL_COLOURS[scene.room])
    image = np.broadcast_to(top + (bottom - top) * rows[..., None], (height, width, 3)).copy()
    floor_start = int(np.ceil(floor_row(height)))
    floor = np.broadcast_to(np.array(FLOOR_COLOURS[scene.material], np.float32), (height - floor_start, width, 3))
    floor = floor.copy()
    depth = np.linspace(0.0, 1.0, height - floor_start, dtype=np.float32)[:, None, None]
    columns = np.arange(width, dtype=np.float32)[None, :, None] / max(width - 1, 1)
    if scene.material == "wood":  # planks: darker seams every few rows and a grain along them
        seams = (np.arange(height - floor_start) % max(height // 24, 2) == 0)[:, None, None]
        floor = floor * np.where(seams, 0.7, 1.0) * (0.92 + 0.08 * np.sin(columns * 40.0))
    elif scene.material == "metal":  # brushed sheen brightest in the middle
        floor = floor * (0.85 + 0.3 * np.exp(-(((columns - 0.5) / 0.2) ** 2)))
    elif scene.material == "glass":  # a reflective pale surface with diagonal glints
        glints = (np.sin((columns * width + depth * height * 2.0) * 0.35) > 0.95).astype(np.float32)
        floor = floor * (1.0 - 0.1 * depth) + 35.0 * glints
    else:  # stone: a fixed speckle (a hash of the pixel position, identical for every seed)
        rows_i, cols_i = np.mgrid[0 : height - floor_start, 0:width]
        speckle = ((rows_i * 73856093) ^ (cols_i * 19349663)) % 97 / 96.0
        floor = floor * (0.85 + 0.3 * speckle[..., None].astype(np.float32))
    if scene.room == "large":
        floor = floor * DARK_HALL_FLOOR_GAIN
    image[floor_start:] = floor
    return image


def pulse_radii(
    scene: Scene, height: int, num_frames: int, frame_rate: float, audio: np.ndarray | None = None
) -> np.ndarray:
    """(num_frames,) radius in px of the scene's pulsing light: the loudness around each frame's instant of `audio`
    (16 kHz: the clip's sound as heard, reverb included), else of its dry voice."""
    times = np.arange(num_frames, dtype=np.float64) / frame_rate
    if audio is None:
        audio = speech(scene.pulse.voice_seed, int(round(num_frames / frame_rate * SAMPLE_RATE)), SAMPLE_RATE)
    level = loudness(audio, SAMPLE_RATE, times)
    largest = PULSE_RADII[scene.pulse.size] * height
    return largest * (PULSE_MIN_RADIUS + (1.0 - PULSE_MIN_RADIUS) * level)


def _draw_disc(frame: np.ndarray, centre: tuple[float, float], radius: float, colour: np.ndarray) -> None:
    """Paint an anti-aliased disc into `frame` (H, W, 3) float, touching only its bounding box."""
    height, width = frame.shape[:2]
    centre_row, centre_column = centre
    top, bottom = max(int(centre_row - radius) - 1, 0), min(int(centre_row + radius) + 2, height)
    left, right = max(int(centre_column - radius) - 1, 0), min(int(centre_column + radius) + 2, width)
    if bottom <= top or right <= left:
        return  # above or beside the frame
    rows = np.arange(top, bottom, dtype=np.float32)[:, None] + 0.5
    columns = np.arange(left, right, dtype=np.float32)[None, :] + 0.5
    distance = np.sqrt((rows - centre_row) ** 2 + (columns - centre_column) ** 2)
    coverage = np.clip(radius - distance + 0.5, 0.0, 1.0)[..., None]  # 1-px anti-aliased edge
    frame[top:bottom, left:right] = frame[top:bottom, left:right] * (1.0 - coverage) + colour * coverage


def render_frames(
    scene: Scene, height: int, width: int, num_frames: int, frame_rate: float, audio: np.ndarray | None = None
) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 frames; frame i shows the instant i / frame_rate. A pulsing light follows
    the loudness of `audio` (16 kHz, the clip's sound), or of its dry voice where none is given."""
    background = _background(scene, height, width)
    times = np.arange(num_frames, dtype=np.float64) / frame_rate
    rows = np.arange(height, dtype=np.float32)[:, None] + 0.5
    columns = np.arange(width, dtype=np.float32)[None, :] + 0.5
    frames = np.broadcast_to(background, (num_frames, height, width, 3)).copy()
    if scene.pulse is not None:
        colour = np.array(COLOURS[scene.pulse.colour], dtype=np.float32)
        centre = (PULSE_ROW * height, scene.pulse.x * width)
        for index, radius in enumerate(pulse_radii(scene, height, num_frames, frame_rate, audio)):
            _draw_disc(frames[index], centre, radius, colour)
    restitution = RESTITUTION[scene.material]
    for ball in scene.balls:
        radius = SIZES[ball.size] * height
        centre_rows = ball_centre_row(ball_heights(ball, restitution, times), radius, height)
        centre_columns = ball_columns(ball, times) * width
        colour = np.array(COLOURS[ball.colour], dtype=np.float32)
        for index, (centre_row, centre_column) in enumerate(zip(centre_rows, centre_columns, strict=True)):
            if np.isnan(centre_row) or np.isnan(centre_column):
                continue  # not in the scene yet
            centre_column = float(centre_column)  # a Python float keeps the arithmetic in float32, as before
            # Only the ball's bounding box is touched: rendering stays cheap at any frame size.
            top, bottom = max(int(centre_row - radius) - 1, 0), min(int(centre_row + radius) + 2, height)
            left, right = max(int(centre_column - radius) - 1, 0), min(int(centre_column + radius) + 2, width)
            if bottom <= top or right <= left:
                continue  # above or beside the frame
            distance = np.sqrt((rows[top:bottom] - centre_row) ** 2 + (columns[:, left:right] - centre_column) ** 2)
            coverage = np.clip(radius - distance + 0.5, 0.0, 1.0)[..., None]  # 1-px anti-aliased edge
            patch = frames[index, top:bottom, left:right]
            frames[index, top:bottom, left:right] = patch * (1.0 - coverage) + colour * coverage
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
