"""Scenes where things happen at any moment: balls dropped in from above, tossed or kicked in from a side, launched
again from rest, several at once; scenes whose contacts land on a rhythm drawn by another generator (a beat at 60-180
bpm, straight or swung, or irregular hits); and a light that pulses with a voice.

`scene_from_onsets` is what gives any onset pattern a visible cause: each onset becomes a ball meeting the floor at
that instant (a bounce from the ball's previous contact, a launch from rest, or a ball dropped in), with up to
MAX_RHYTHM_BALLS balls in their own lanes for onsets closer than a hop allows.
"""

import numpy as np

from world.scene import (
    COLOURS,
    GRAVITY,
    MATERIALS,
    MIN_FLIGHT_S,
    RESTITUTION,
    ROOMS,
    SIZES,
    Ball,
    Flight,
    Pulse,
    Scene,
    landing,
)

MAX_RHYTHM_BALLS = 3
MAX_HOP_S = 1.1  # a bounce lasting longer would rise above the frame (apex GRAVITY * hop^2 / 8 travel heights)
DROP_IN_HEIGHT = 1.3  # travel heights: a ball dropped in starts above the frame's top
BEAT_TEMPO_BPM = (60.0, 180.0)


def _colours_and_sizes(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    return [(tuple(COLOURS)[rng.integers(len(COLOURS))], tuple(SIZES)[rng.integers(len(SIZES))]) for _ in range(count)]


def bounces_after(flight: Flight, restitution: float) -> list[Flight]:
    """The flights of a ball's natural bounces after `flight` lands, until a hop would be shorter than MIN_FLIGHT_S
    (then it rests); the horizontal speed is kept, halved at each contact (the floor's friction)."""
    flights = [flight]
    while True:
        time, speed = landing(flights[-1])
        up_speed, last = speed * restitution, flights[-1]
        if 2.0 * up_speed / GRAVITY < MIN_FLIGHT_S:
            return flights
        x = last.x + last.x_speed * (time - last.start)
        flights.append(Flight(start=time, height=0.0, up_speed=up_speed, x=x, x_speed=last.x_speed * 0.5))


def _kick_in(rng: np.random.Generator, start: float, restitution: float) -> tuple[Flight, ...]:
    """A ball kicked (low, fast) or tossed (high, slower) in from a side, landing and bouncing inside the frame."""
    from_left = rng.random() < 0.5
    tossed = rng.random() < 0.5
    height = float(rng.uniform(0.3, 0.7) if tossed else rng.uniform(0.05, 0.35))
    up_speed = float(rng.uniform(1.0, 2.0) if tossed else rng.uniform(0.0, 0.8))
    x_enter = -0.1 if from_left else 1.1
    first_landing_x = float(rng.uniform(0.25, 0.75))
    flight_time = landing(Flight(0.0, height, up_speed, 0.0, 0.0))[0]
    x_speed = (first_landing_x - x_enter) / flight_time
    flights = bounces_after(Flight(start, height, up_speed, x_enter, x_speed), restitution)
    # Keep the ball inside the frame: stop its sideways motion once it would reach an edge.
    kept = []
    for flight in flights:
        end_x = flight.x + flight.x_speed * (landing(flight)[0] - flight.start)
        if kept and not 0.08 <= end_x <= 0.92:
            flight = Flight(flight.start, flight.height, flight.up_speed, flight.x, 0.0)
        kept.append(flight)
    return tuple(kept)


def _drop_in(rng: np.random.Generator, start: float, x: float, restitution: float) -> tuple[Flight, ...]:
    """A ball dropped in from above the frame at `start`, bouncing until it rests."""
    height = float(rng.uniform(1.0, DROP_IN_HEIGHT))
    return tuple(bounces_after(Flight(start, height, 0.0, x, 0.0), restitution))


def _relaunch(rng: np.random.Generator, flights: tuple[Flight, ...], restitution: float, duration_s: float):
    """The ball launched again from rest (tossed up) at a random moment after it came to rest, if there is time."""
    rest_time, _ = landing(flights[-1])
    rest_x = flights[-1].x + flights[-1].x_speed * (rest_time - flights[-1].start)
    start = rest_time + float(rng.uniform(0.1, 1.0))
    if start > duration_s - 0.3:
        return flights
    toss = Flight(start, 0.0, float(rng.uniform(1.0, 2.4)), rest_x, 0.0)
    return flights + tuple(bounces_after(toss, restitution))


def sample_event_scene(seed: int, duration_s: float) -> Scene:
    """1-3 balls, each coming in at a random moment (dropped from above, kicked or tossed in from a side), bouncing
    to rest and maybe launched again; the floor's impact sounds."""
    rng = np.random.default_rng(seed)
    material, room = MATERIALS[rng.integers(len(MATERIALS))], ROOMS[rng.integers(len(ROOMS))]
    restitution = RESTITUTION[material]
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    balls = []
    kicked = rng.random() < 0.4 and count == 1  # a ball crossing the others' lanes would hide their bounces
    for index, (colour, size) in enumerate(_colours_and_sizes(rng, count)):
        start = float(rng.uniform(-0.3, duration_s - 0.6))
        lane_x = (index + float(rng.uniform(0.3, 0.7))) / count
        flights = _kick_in(rng, start, restitution) if kicked else _drop_in(rng, start, lane_x, restitution)
        for _ in range(int(rng.integers(0, 3))):
            flights = _relaunch(rng, flights, restitution, duration_s)
        rest = flights[-1]
        balls.append(Ball(colour, size, rest.x, 0.0, 0.0, flights=flights))
    return Scene(balls=tuple(balls), material=material, room=room)


# --- rhythms from other generators ---------------------------------------------------------------------------------


def beat_onsets(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """A drum-machine pattern: a tempo in BEAT_TEMPO_BPM, quarter or eighth notes, straight or swung, each step
    sounding with a probability (downbeats more often), from a random phase."""
    tempo = float(rng.uniform(*BEAT_TEMPO_BPM))
    step = 60.0 / tempo / (2 if rng.random() < 0.5 else 1)
    swing = float(rng.uniform(0.5, 0.67)) if rng.random() < 0.4 else 0.5  # share of a pair of steps the first takes
    density = float(rng.uniform(0.5, 1.0))
    onsets, index, time = [], 0, float(rng.uniform(0.0, step * 2))
    while time < duration_s:
        if rng.random() < (1.0 if index % 4 == 0 else density):
            onsets.append(time)
        time += 2 * step * (swing if index % 2 == 0 else 1 - swing)
        index += 1
    return np.array(onsets)


def irregular_onsets(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """Hits at no tempo: gaps drawn uniformly from 0.12-1.2 s."""
    onsets, time = [], float(rng.uniform(0.05, 0.8))
    while time < duration_s:
        onsets.append(time)
        time += float(rng.uniform(0.12, 1.2))
    return np.array(onsets)


def scene_from_onsets(
    onsets: np.ndarray, rng: np.random.Generator, material: str, room: str, sound: str = "impacts"
) -> Scene:
    """Balls whose contacts are exactly `onsets` (s, increasing) where MAX_RHYTHM_BALLS can make them: each onset
    goes to a ball free for at least MIN_FLIGHT_S (the one with the longest hop up to MAX_HOP_S, a bounce), else to a
    ball launched from rest, else to a new ball dropped in from above; an onset no ball can take is left out (the
    scene's contacts are the onsets it kept, and its sound is made from them)."""
    lanes: list[list[Flight]] = []  # per ball, its flights so far
    last_contact: list[float] = []
    for onset in np.sort(onsets):
        gaps = [onset - last for last in last_contact]
        bounceable = [i for i, gap in enumerate(gaps) if MIN_FLIGHT_S <= gap <= MAX_HOP_S]
        resting = [i for i, gap in enumerate(gaps) if gap > MAX_HOP_S]
        if bounceable:
            ball = max(bounceable, key=lambda i: gaps[i])
            hop = gaps[ball]
            lanes[ball].append(Flight(last_contact[ball], 0.0, GRAVITY * hop / 2, lanes[ball][0].x, 0.0))
        elif resting:
            ball = resting[0]
            hop = float(rng.uniform(0.35, min(0.9, gaps[ball] - 0.1)))  # a launch from rest, silent
            lanes[ball].append(Flight(onset - hop, 0.0, GRAVITY * hop / 2, lanes[ball][0].x, 0.0))
        elif len(lanes) < MAX_RHYTHM_BALLS:
            height = float(rng.uniform(0.6, DROP_IN_HEIGHT))
            fall = np.sqrt(2.0 * height / GRAVITY)
            lanes.append([Flight(onset - fall, height, 0.0, 0.0, 0.0)])
            last_contact.append(onset)
            continue
        else:
            continue
        last_contact[ball] = onset
    balls = []
    order = rng.permutation(len(lanes))  # which lane each ball takes
    for index, flights in enumerate(lanes):
        x = (order[index] + float(rng.uniform(0.35, 0.65))) / len(lanes)
        flights = tuple(Flight(f.start, f.height, f.up_speed, x, 0.0) for f in flights)
        colour, size = _colours_and_sizes(rng, 1)[0]
        balls.append(Ball(colour, size, x, 0.0, 0.0, flights=flights))
    return Scene(balls=tuple(balls), material=material, room=room, sound=sound)


def sample_rhythm_scene(seed: int, duration_s: float, sound: str = "impacts") -> Scene:
    """Balls bouncing on a beat or on irregular hits (`beat_onsets`, `irregular_onsets`)."""
    rng = np.random.default_rng(seed)
    material, room = MATERIALS[rng.integers(len(MATERIALS))], ROOMS[rng.integers(len(ROOMS))]
    onsets = beat_onsets(rng, duration_s) if rng.random() < 0.6 else irregular_onsets(rng, duration_s)
    return scene_from_onsets(onsets, rng, material, room, sound)


def sample_pulse_scene(seed: int) -> Scene:
    """A light on the wall pulsing with a voice, above a floor, in a room."""
    rng = np.random.default_rng(seed)
    material, room = MATERIALS[rng.integers(len(MATERIALS))], ROOMS[rng.integers(len(ROOMS))]
    colour, size = _colours_and_sizes(rng, 1)[0]
    pulse = Pulse(colour=colour, size=size, x=float(rng.uniform(0.3, 0.7)), voice_seed=int(rng.integers(2**31)))
    return Scene(balls=(), material=material, room=room, pulse=pulse)
