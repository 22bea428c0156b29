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
# What a contact sounds like: the floor's own modal impact, or a drum (each ball its own: kick, snare, hi-hat).
SOUND_KINDS = ("impacts", "drums")
PULSE_RADII: dict[str, float] = {"small": 0.09, "large": 0.15}  # the light's largest radius, fraction of frame height

GRAVITY = 5.0  # floor-to-ceiling heights per s^2: a drop from the top takes ~0.63 s
RESTITUTION: dict[str, float] = {"wood": 0.7, "metal": 0.78, "glass": 0.82, "stone": 0.6}
MIN_FLIGHT_S = 0.2  # once a bounce would last less than this the ball is taken to rest (no Zeno sequence)
MAX_RELEASE_S = 0.5  # balls are released at a random instant in [0, MAX_RELEASE_S)
# Impact speed bands (travel heights per second) that sync figures are split by: below 1 the hop that follows lasts
# under ~0.3 s, about one latent frame of the LTX-2 video VAE (8 frames at 24 fps), so two contacts share one.
IMPACT_SPEED_BANDS = ((0.0, 1.0), (1.0, 1.5), (1.5, float("inf")))


@dataclass(frozen=True)
class Flight:
    """One ballistic arc of a ball that comes into the scene in motion (dropped in from above, tossed or kicked in
    from a side, or launched again from rest): from `start` the ball flies under `GRAVITY` until it meets the floor.
    The next flight of the same ball starts at that contact (a bounce) or later (the ball rests until then)."""

    start: float  # seconds
    height: float  # the ball's bottom at `start`, fraction of its travel (above 1: above the frame's top)
    up_speed: float  # travel heights per second, upward positive
    x: float  # horizontal centre at `start`, fraction of the frame width (outside [0, 1]: beside the frame)
    x_speed: float  # fraction of the frame width per second, while in flight


@dataclass(frozen=True)
class Ball:
    colour: str
    size: str
    x: float  # horizontal centre, fraction of the frame width (with `flights`: where the ball comes to rest)
    drop_height: float  # height of the ball's bottom at release, fraction of its travel (0 floor, 1 top)
    release_time: float  # seconds
    # When given, the ball is absent until flights[0].start and then follows these arcs (drop_height and
    # release_time unused); otherwise it hangs at drop_height until release_time and bounces off the floor.
    flights: tuple[Flight, ...] = ()


@dataclass(frozen=True)
class Pulse:
    """A light on the wall that swells with a voice's loudness (`world.voice`): its radius follows the voice's level,
    so continuous sound, not only impacts, has something to show."""

    colour: str
    size: str  # a key of PULSE_RADII
    x: float  # horizontal centre, fraction of the frame width
    voice_seed: int  # draws the voice (`world.voice.speech`)


@dataclass(frozen=True)
class Scene:
    balls: tuple[Ball, ...]
    material: str  # floor material
    room: str  # "small" (bright, short reverb) or "large" (dark hall, long reverb)
    sound: str = "impacts"  # a key of SOUND_KINDS: what a contact sounds like
    pulse: Pulse | None = None


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


def landing(flight: Flight) -> tuple[float, float]:
    """(time, downward speed) at which `flight` meets the floor."""
    reach = np.sqrt(flight.up_speed**2 + 2.0 * GRAVITY * max(flight.height, 0.0))
    return flight.start + (flight.up_speed + reach) / GRAVITY, float(reach)


def ball_contacts(ball: Ball, restitution: float, duration_s: float, ball_index: int = 0) -> list[Contact]:
    """Contact instants of one ball within [0, duration_s)."""
    if ball.flights:
        contacts = [Contact(time=float(t), ball=ball_index, speed=v) for t, v in map(landing, ball.flights)]
        return [contact for contact in contacts if contact.time < duration_s]
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


def flight_path(ball: Ball, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(height, x) of a ball with flights at each of `times`: NaN before it comes in, at rest between a contact and
    the next flight (and after the last contact)."""
    heights = np.full(times.shape, np.nan)
    columns = np.full(times.shape, np.nan)
    for index, flight in enumerate(ball.flights):
        land_time, _ = landing(flight)
        end = ball.flights[index + 1].start if index + 1 < len(ball.flights) else np.inf
        flying = (times >= flight.start) & (times < min(land_time, end))
        elapsed = times[flying] - flight.start
        heights[flying] = flight.height + flight.up_speed * elapsed - 0.5 * GRAVITY * elapsed**2
        columns[flying] = flight.x + flight.x_speed * elapsed
        resting = (times >= land_time) & (times < end)
        heights[resting] = 0.0
        columns[resting] = flight.x + flight.x_speed * (land_time - flight.start)
    return np.clip(heights, 0.0, None), columns


def ball_columns(ball: Ball, times: np.ndarray) -> np.ndarray:
    """Horizontal centre (fraction of the frame width) at each of `times`; NaN while the ball is not in the scene."""
    if ball.flights:
        return flight_path(ball, times)[1]
    return np.full(times.shape, ball.x)


def ball_heights(ball: Ball, restitution: float, times: np.ndarray) -> np.ndarray:
    """Height of the ball's bottom above the floor (fraction of its travel) at each of `times` (seconds); NaN while
    a ball with flights is not yet in the scene."""
    if ball.flights:
        return flight_path(ball, times)[0]
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
