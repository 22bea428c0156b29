"""What happens in a clip: which balls, which floor, which room, and the exact instants each ball meets the floor.

Physics is analytic (no integration error): a ball released from rest at height `drop_height` (in floor-to-ceiling
units) falls under `GRAVITY`, and each contact multiplies its speed by the floor's restitution. Contact instants
are therefore known to the sample; both the renderer and the sound synthesiser read them from here.
"""

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 210, 40),
}
SIZES: dict[str, float] = {"small": 0.06, "large": 0.11}  # ball radius, fraction of the frame height
MATERIALS = ("wood", "metal", "glass", "stone")
ROOMS = ("small", "large")  # a small bright room, a large dark hall

GRAVITY = 5.0  # floor-to-ceiling heights per s^2: a drop from the top takes ~0.63 s
RESTITUTION: dict[str, float] = {"wood": 0.7, "metal": 0.78, "glass": 0.82, "stone": 0.6}
MIN_FLIGHT_S = 0.2  # once a bounce would last less than this the ball is taken to rest (no Zeno sequence)
MAX_RELEASE_S = 0.5  # balls are released at a random instant in [0, MAX_RELEASE_S)
# Impact speed bands (travel heights per second) that sync figures are split by: below 1 the hop that follows lasts
# under ~0.3 s, about one latent frame of the LTX-2 video VAE (8 frames at 24 fps), so two contacts share one.
IMPACT_SPEED_BANDS = ((0.0, 1.0), (1.0, 1.5), (1.5, float("inf")))


@dataclass(frozen=True)
class Ball:
    colour: str
    size: str
    x: float  # horizontal centre, fraction of the frame width
    drop_height: float  # height of the ball's bottom at release, fraction of its travel (0 floor, 1 top)
    release_time: float  # seconds


@dataclass(frozen=True)
class Scene:
    balls: tuple[Ball, ...]
    material: str  # floor material
    room: str  # "small" (bright, short reverb) or "large" (dark hall, long reverb)


@dataclass(frozen=True)
class Contact:
    """One ball meeting the floor."""

    time: float  # seconds, exact contact instant
    ball: int  # index into `Scene.balls`
    speed: float  # impact speed, travel heights per second


def sample_scene(
    seed: int,
    num_balls: int = 1,
    colour: str | None = None,
    size: str | None = None,
    material: str | None = None,
    room: str | None = None,
) -> Scene:
    """Draw a scene from `seed`; any attribute given is used as is (for prompts with known content)."""
    if num_balls < 1:
        raise ValueError(f"`num_balls` must be >= 1; got {num_balls}.")
    for name, value, valid in (
        ("colour", colour, tuple(COLOURS)),
        ("size", size, tuple(SIZES)),
        ("material", material, MATERIALS),
        ("room", room, ROOMS),
    ):
        if value is not None and value not in valid:
            raise ValueError(f"`{name}` must be one of {valid}; got {value!r}.")
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    balls = []
    for index in range(num_balls):
        # Several balls spread across the width so that they never overlap.
        lane_low, lane_high = index / num_balls, (index + 1) / num_balls
        balls.append(
            Ball(
                colour=colour if colour is not None and index == 0 else colours[rng.integers(len(colours))],
                size=size if size is not None and index == 0 else tuple(SIZES)[rng.integers(len(SIZES))],
                x=float(lane_low + (lane_high - lane_low) * rng.uniform(0.3, 0.7)),
                drop_height=float(rng.uniform(0.55, 1.0)),
                release_time=float(rng.uniform(0.0, MAX_RELEASE_S)),
            )
        )
    return Scene(
        balls=tuple(balls),
        material=material if material is not None else MATERIALS[rng.integers(len(MATERIALS))],
        room=room if room is not None else ROOMS[rng.integers(len(ROOMS))],
    )


def ball_contacts(ball: Ball, restitution: float, duration_s: float, ball_index: int = 0) -> list[Contact]:
    """Contact instants of one ball within [0, duration_s)."""
    contacts = []
    time = ball.release_time + np.sqrt(2.0 * ball.drop_height / GRAVITY)
    speed = np.sqrt(2.0 * GRAVITY * ball.drop_height)
    while time < duration_s:
        contacts.append(Contact(time=float(time), ball=ball_index, speed=float(speed)))
        speed *= restitution
        flight = 2.0 * speed / GRAVITY
        if flight < MIN_FLIGHT_S:
            break
        time += flight
    return contacts


def ball_heights(ball: Ball, restitution: float, times: np.ndarray) -> np.ndarray:
    """Height of the ball's bottom above the floor (fraction of its travel) at each of `times` (seconds)."""
    heights = np.full(times.shape, ball.drop_height, dtype=np.float64)
    # The bounce sequence always ends (speeds shrink geometrically below MIN_FLIGHT_S), so take all of it.
    contacts = ball_contacts(ball, restitution, duration_s=np.inf)
    # Falling from release to the first contact.
    first = contacts[0].time if contacts else np.inf
    falling = (times >= ball.release_time) & (times < first)
    heights[falling] = ball.drop_height - 0.5 * GRAVITY * (times[falling] - ball.release_time) ** 2
    for index, contact in enumerate(contacts):
        up_speed = contact.speed * restitution
        end = contacts[index + 1].time if index + 1 < len(contacts) else np.inf
        in_flight = (times >= contact.time) & (times < end)
        elapsed = times[in_flight] - contact.time
        if index + 1 < len(contacts):
            heights[in_flight] = up_speed * elapsed - 0.5 * GRAVITY * elapsed**2
        else:
            heights[in_flight] = 0.0  # the next bounce would be too short to show: the ball rests
    return np.clip(heights, 0.0, None)


def scene_contacts(scene: Scene, duration_s: float) -> list[Contact]:
    """Every contact of every ball, in time order."""
    restitution = RESTITUTION[scene.material]
    contacts = [
        contact
        for index, ball in enumerate(scene.balls)
        for contact in ball_contacts(ball, restitution, duration_s, ball_index=index)
    ]
    return sorted(contacts, key=lambda contact: contact.time)
