"""The richer world: balls that come in at any moment, any onset pattern given a visible cause, a light that pulses
with a voice, and the frame rates the training draws."""

import numpy as np
import pytest

from ltx_pipeline.tiny import build_word_tokenizer
from training.config import build_tokenizer
from world import TRAINING_FRAME_RATES, WORLD_VOCABULARY, detectors, generate_training_clip, render_clip
from world.events import sample_event_scene, sample_pulse_scene, scene_from_onsets
from world.scene import MIN_FLIGHT_S, scene_contacts


@pytest.mark.parametrize("frame_rate", TRAINING_FRAME_RATES)
def test_a_rhythm_becomes_balls_meeting_the_floor_at_each_onset(frame_rate):
    # A swung 150 bpm eighth-note pattern with an irregular tail: onsets closer than one hop need a second ball.
    onsets = np.array([0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 2.3, 2.45, 3.1])
    scene = scene_from_onsets(onsets, np.random.default_rng(0), "wood", "small", sound="drums")
    assert 2 <= len(scene.balls) <= 3
    contacts = np.array([contact.time for contact in scene_contacts(scene, 4.0)])
    np.testing.assert_allclose(contacts, onsets, atol=1e-9)
    clip = render_clip(scene, 128, 128, 97, frame_rate)
    tolerance = 1 / frame_rate
    assert detectors.match_events(onsets, detectors.audio_onsets(clip.audio), tolerance)[1] >= len(onsets) - 1
    seen = detectors.match_events(
        onsets[onsets < 97 / frame_rate], detectors.visual_impacts_in_lanes(clip.frames, frame_rate), tolerance
    )[1]
    assert seen >= len(onsets[onsets < 97 / frame_rate]) - 1
    assert "to a drum beat" in clip.caption and "drum hits" in clip.caption


def test_onsets_no_three_balls_can_take_are_left_out_of_sound_and_picture():
    onsets = np.arange(0.5, 1.0, 0.05)  # 20 Hz: a ball needs MIN_FLIGHT_S between contacts
    scene = scene_from_onsets(onsets, np.random.default_rng(1), "metal", "large")
    contacts = [contact.time for contact in scene_contacts(scene, 2.0)]
    assert len(scene.balls) == 3 and len(contacts) < len(onsets)
    for ball in range(3):
        times = [contact.time for contact in scene_contacts(scene, 2.0) if contact.ball == ball]
        assert np.all(np.diff(times) >= MIN_FLIGHT_S - 1e-9)


def test_balls_come_in_at_any_moment_and_every_contact_is_heard():
    starts, heard, total = [], 0, 0
    for seed in range(12):
        scene = sample_event_scene(seed, 97 / 24)
        starts += [ball.flights[0].start for ball in scene.balls]
        clip = render_clip(scene, 64, 64, 97, 24.0, seed=seed)
        truth = np.array([impact.time for impact in clip.impacts])
        heard += detectors.match_events(truth, detectors.audio_onsets(clip.audio), 1 / 24)[1]
        total += len(truth)
    assert max(starts) > 2.0 and min(starts) < 0.5  # not only at the start of the clip
    assert heard >= 0.9 * total


def test_the_pulsing_light_follows_its_voice():
    scene = sample_pulse_scene(5)
    clip = render_clip(scene, 64, 64, 97, 25.0, seed=5)
    assert clip.impacts == () and "light pulses with a voice" in clip.caption
    assert detectors.loudness_tracking(clip.frames, 25.0, clip.audio, clip.sampling_rate) > 0.9
    # Against another voice's loudness it does not track.
    other = render_clip(sample_pulse_scene(6), 64, 64, 97, 25.0, seed=6)
    assert detectors.loudness_tracking(clip.frames, 25.0, other.audio, other.sampling_rate) < 0.5


def test_training_clips_mix_every_kind_at_every_frame_rate():
    captions = [generate_training_clip(seed, 32, 32, 25, 30.0).caption for seed in range(40)]
    assert any("light pulses" in caption for caption in captions)
    assert any("drum beat" in caption for caption in captions)
    assert any(" and a " in caption and "drum" not in caption for caption in captions)
    for caption in captions:  # every word is one the embedded model's tokenizer knows whole
        assert set(caption.replace(",", "").split()) <= set(WORLD_VOCABULARY)


def test_new_words_keep_the_first_words_token_ids():
    first_words = WORLD_VOCABULARY[: WORLD_VOCABULARY.index("echo") + 1]
    before, after = build_word_tokenizer(first_words), build_tokenizer()
    caption = "a small red ball and a large blue ball bounce on a wood floor in a small bright room, hollow knocks"
    assert before(caption).input_ids == after(caption).input_ids
    assert len(after) <= 512  # the text encoder's vocabulary
    assert after.tokenize("a light pulses to a drum beat")[1:] == ["▁light", "▁pulses", "▁to", "▁a", "▁drum", "▁beat"]


@pytest.mark.parametrize("frame_rate", TRAINING_FRAME_RATES)
def test_the_benchmarks_held_out_audio_is_heard_and_its_world_rendering_seen_at_each_onset(frame_rate):
    from benchmarks.held_out_audio import drum_pattern, hummed_voice, irregular_tosses

    tolerance = 2 / frame_rate
    for clip in (irregular_tosses(7_000_001, 97, frame_rate), drum_pattern(7_100_003, 168.0, 97, frame_rate)):
        assert len(clip.onsets) >= 5 and np.all(np.diff(clip.onsets) > 0.03)
        heard = detectors.match_events(clip.onsets, detectors.audio_onsets(clip.audio), tolerance)[1]
        seen = detectors.match_events(
            clip.onsets, detectors.visual_impacts_in_lanes(clip.frames, frame_rate), tolerance
        )[1]
        # An onset in the last frame or two has no frames after it to show the bounce.
        assert heard >= 0.85 * len(clip.onsets) and seen >= len(clip.onsets) - 1
    voice = hummed_voice(7_200_000, 97, frame_rate)
    levels = detectors.loudness(voice.audio, 16_000, np.arange(97) / frame_rate)
    assert levels.std() > 0.2 and "light pulses with a voice" in voice.caption
