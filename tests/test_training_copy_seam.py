"""Continuation samples that hold what long form's default "copy" seam hands a window: the window before's last latents
as they are, 8-frame latents from mid-scene. Training takes them from a longer scene encoded from its start and cut at
a latent frame (`training.data.seam_cut`); these tests check that the held latents, the targets after them, the audio
latents and the impacts all line up with that cut, and that the window keeps its length."""

import numpy as np
import pytest
import torch
from diffusers import LTX2Pipeline

from ltx_pipeline.audio import seconds_to_samples
from training.data import downsample_video, frames_to_video, is_seam_start, render_clips, seam_cut, seam_start_step
from training.train import (
    ClipGroup,
    StageTrainer,
    TransformerDraw,
    draw_transformer_batch,
    parse_args,
    stereo_mel,
)
from world import generate_clip, generate_training_clip

TOY = ["--variant", "tiny", "--height", "64", "--width", "64", "--num-frames", "17", "--num-clips", "12"]
TOY += ["--batch-size", "4", "--log-every", "1", "--device", "cpu", "--mid-scene-fraction", "1"]
TOY += ["--continuation-fraction", "1", "--continuation-copy-share", "1"]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    out = tmp_path_factory.mktemp("copy_seam")  # fresh tiny components: what is checked holds for any weights
    return StageTrainer(parse_args(["--stage", "transformer", "--steps", "1", "--out", str(out), *TOY]))


def seam_scenes(trainer: StageTrainer) -> tuple[list[int], list]:
    """The trainer's seam clips and their scenes, rendered here from the seed (frame 0 to a frame past the clip)."""
    clips = trainer.groups[0].seam_clips.tolist()
    assert len(clips) >= 4, "the toy data set should hold a batch of seam clips"
    scenes = [
        generate_clip(clip, 64, 64, 17, 24.0, start_frame=trainer.data.start_frames[clip], cut=False) for clip in clips
    ]
    return clips, scenes


def copy_draw(clips: list[int], video_sigma: float, audio_sigma: float, stage: int) -> TransformerDraw:
    """A batch of `clips` (the trainer's batch size: 4), every sample a "copy" continuation holding 2 or 1 frames."""
    count = len(clips)
    return TransformerDraw(
        indices=torch.tensor(clips),
        stage=stage,
        video_sigma=torch.full((count,), video_sigma),
        audio_sigma=torch.full((count,), audio_sigma),
        caption_dropped=torch.zeros(count, dtype=torch.bool),
        isolate=False,
        held_frames=torch.tensor([2, 1] * (count // 2) + [2] * (count % 2)),
        copied=torch.ones(count, dtype=torch.bool),
    )


def transformer_inputs(trainer: StageTrainer, draw: TransformerDraw) -> dict:
    seen = {}
    hook = trainer.transformer.register_forward_pre_hook(lambda _, __, kw: seen.update(kw), with_kwargs=True)
    try:
        with torch.no_grad():
            trainer.transformer_loss(draw)
    finally:
        hook.remove()
    return seen


def test_seam_starts_are_on_the_latent_frame_and_audio_latent_grids():
    for frame_rate, step in ((24.0, 24), (25.0, 8), (30.0, 24)):
        assert seam_start_step(frame_rate) == step
        for start in range(step, 97, step):
            cut = seam_cut(start, frame_rate)
            assert cut.latent_start * 8 == start  # the scene's latent that ends at the clip's first frame
            assert cut.audio_start * frame_rate == start * 25  # exactly the clip's first frame's time
            assert is_seam_start(start, frame_rate)
        assert not is_seam_start(step + 8 if step > 8 else 12, frame_rate) and not is_seam_start(0, frame_rate)
    with pytest.raises(ValueError, match="start_frame"):
        seam_cut(12, 24.0)


def test_copy_samples_hold_the_scenes_own_latents_from_the_cut(trainer):
    clips, scenes = seam_scenes(trainer)
    starts = {trainer.data.start_frames[clip] for clip in clips}
    assert starts == {24}  # at 17 frames and 24 fps the one seam start: latent frame 3 of the scene
    vae = trainer.fresh["vae"]
    video = frames_to_video(torch.stack([torch.from_numpy(scene.frames[: 24 + 17]) for scene in scenes]))
    for stage in (1, 2):
        pixels = downsample_video(video, 2) if stage == 1 else video
        with torch.no_grad():  # the scenes encoded together, as the trainer batches them (CPU convolutions differ
            latents = vae.encode(pixels).latent_dist.mode().float()  # by batch in their last bits)
        assert latents.shape[2] == 3 + 3  # 41 frames: the scene's latents, 3 before the clip's 3
        latents = LTX2Pipeline._normalize_latents(latents[:, :, 3:6], vae.latents_mean, vae.latents_std)
        expected = LTX2Pipeline._pack_latents(latents)
        held = trainer.seam_video_latents[stage][trainer.seam_row[torch.tensor(clips)]]
        torch.testing.assert_close(held, expected, rtol=0, atol=0)
        # What the transformer gets: the held tokens exactly those latents, the others noised from them (the clip's
        # own latents, encoded from its first frame, differ), a sample holding 2 or 1 latent frames.
        seen = transformer_inputs(trainer, copy_draw(clips[:4], 1e-6, 0.0, stage))
        per_frame = trainer.geometry[stage][1] * trainer.geometry[stage][2]
        hidden = seen["hidden_states"]
        torch.testing.assert_close(hidden[0, : 2 * per_frame], expected[0, : 2 * per_frame], rtol=0, atol=0)
        torch.testing.assert_close(hidden[1, :per_frame], expected[1, :per_frame], rtol=0, atol=0)
        torch.testing.assert_close(hidden, expected[:4], rtol=0, atol=1e-4)
        own = trainer.video_latents[stage][torch.tensor(clips)]
        assert (own[:, :per_frame] - expected[:, :per_frame]).abs().amax() > 1e-2  # a one-frame latent 0 instead


def test_copy_samples_audio_latents_are_the_scenes_over_the_windows_time(trainer):
    clips, scenes = seam_scenes(trainer)
    audio_vae = trainer.fresh["audio_vae"]
    count = round(17 / 24 * 25)

    def encoded(audio: list[np.ndarray], offset: int = 0) -> torch.Tensor:
        with torch.no_grad():
            latents = audio_vae.encode(stereo_mel(torch.from_numpy(np.stack(audio)))).latent_dist.mode().float()
        packed = LTX2Pipeline._pack_audio_latents(latents[:, :, offset : offset + count])
        return LTX2Pipeline._normalize_audio_latents(packed, audio_vae.latents_mean, audio_vae.latents_std)

    # Text to audio+video continuation (audio generated): the scene's audio latents on its grid from the clip's first
    # frame, 1 s into the scene (audio latent 25), as long form's grid gives a window's.
    first = round(24 / 24 * 25)
    scene_audio = [scene.audio for scene in scenes]
    table = trainer.scene_audio_latents[0][torch.tensor(clips)]
    torch.testing.assert_close(table, encoded(scene_audio, first), rtol=0, atol=0)
    for shifted in (first - 1, first + 1):  # a cut off by one audio latent (40 ms) would show
        assert not torch.allclose(table, encoded(scene_audio, shifted))
    seen = transformer_inputs(trainer, copy_draw(clips[:4], 0.5, 1e-6, 1))
    torch.testing.assert_close(seen["audio_hidden_states"], table[:4], rtol=0, atol=1e-4)
    # Audio to video continuation (audio held clean): the scene's sound over the window's time, sliced as long form
    # slices a window's (`seconds_to_samples` of its first and last frame's time) and encoded alone.
    begin, end = seconds_to_samples(24 / 24, 16_000), seconds_to_samples((24 + 17) / 24, 16_000)
    sliced = encoded([scene.audio[begin:end] for scene in scenes[:4]])
    seen = transformer_inputs(trainer, copy_draw(clips[:4], 0.5, 0.0, 1))
    torch.testing.assert_close(seen["audio_hidden_states"], sliced, rtol=0, atol=0)
    assert not torch.allclose(sliced, table[:4], atol=1e-3)  # the two kinds differ: the test tells them apart
    later = seconds_to_samples(25 / 24, 16_000)  # a slice one frame late would show
    assert not torch.allclose(
        seen["audio_hidden_states"], encoded([s.audio[later : later + end - begin] for s in scenes[:4]])
    )


def test_seam_clips_impacts_and_onset_weights_are_shifted_by_the_cut(trainer):
    clips, scenes = seam_scenes(trainer)
    heard = 0
    for clip, scene in zip(clips, scenes, strict=True):
        start = trainer.data.start_frames[clip]
        inside = [impact for impact in scene.impacts if start <= impact.frame < start + 17]
        assert trainer.data.impact_frames[clip] == [impact.frame - start for impact in inside]
        assert np.array_equal(trainer.data.frames[clip].numpy(), scene.frames[start : start + 17])
        weights = trainer.audio_weights[0][clip]
        for impact in inside:  # the onset weight at the impact's frame after the cut, on the clip's audio latents
            assert abs((impact.frame - start) / 24.0 - (impact.time - start / 24.0)) <= 0.5 / 24.0
            assert weights[int((impact.frame - start) / 24.0 * 25)] > 1
            heard += 1
    assert heard, "the toy seam clips should hold impacts after their cut"


def test_draws_take_copy_samples_from_seam_clips_and_reencode_stays_an_option(tmp_path):
    generator = torch.Generator().manual_seed(0)
    groups = [ClipGroup(24.0, 0, 10, torch.tensor([3, 7]))]
    draw = draw_transformer_batch(400, 10, generator, groups, continuation_fraction=0.5, copy_share=0.75)
    held = draw.held_frames > 0
    assert not draw.copied[~held].any()
    share = float(draw.copied[held].float().mean())
    assert 0.65 < share < 0.85
    assert set(draw.indices[draw.copied].tolist()) == {3, 7}
    # --continuation-copy-share 0: every held sample holds its clip's own first latents (the "reencode" seam), and
    # no clip keeps its scene: the clips are the ones rendered before.
    assert draw_transformer_batch(8, 10, generator, groups, 0.5, 0.0).copied is None
    argv = ["--stage", "transformer", "--steps", "1", "--out", str(tmp_path), *TOY[:-2], "--continuation-copy-share"]
    reencode = StageTrainer(parse_args([*argv, "0"]))
    assert reencode.seam_video_latents is None and all(len(group.seam_clips) == 0 for group in reencode.groups)
    assert np.array_equal(
        reencode.data.frames.numpy(), render_clips(range(12), 64, 64, 17, 24.0, mid_scene_fraction=1).frames.numpy()
    )


def test_copy_share_is_checked_and_defaults_to_mostly_copy():
    base = ["--stage", "transformer", "--steps", "1", "--out", "x"]
    assert parse_args(base).continuation_copy_share == 0.75
    assert parse_args(["--stage", "vocoder", "--steps", "1", "--out", "x"]).continuation_copy_share == 0.0
    for bad in (["--continuation-copy-share", "1.5"], ["--continuation-copy-share", "-0.5"]):
        with pytest.raises(SystemExit):
            parse_args([*base, *bad])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "audio_vae", "--steps", "1", "--out", "x", "--continuation-copy-share", "0.5"])


def test_a_copy_sample_is_the_windows_97_frames_at_24_25_and_30_fps(tmp_path):
    argv = ["--stage", "transformer", "--steps", "1", "--out", str(tmp_path), "--world", "rich"]
    argv += ["--frame-rates", "24", "25", "30", *TOY, "--num-frames", "97", "--num-clips", "9"]
    trainer = StageTrainer(parse_args(argv))
    assert trainer.data.frames.shape[1] == 97
    for index, (group, audio_frames) in enumerate(zip(trainer.groups, (101, 97, 81), strict=True)):
        assert len(group.seam_clips), f"no seam clip at {group.frame_rate} fps"
        clip = int(group.seam_clips[0])
        start = trainer.data.start_frames[clip]
        assert start % seam_start_step(group.frame_rate) == 0 and 0 < start < 97
        # The rich world's seam clip is its scene from the cut: the clip the generator cuts at that start.
        scene = generate_training_clip(clip, 64, 64, 97, group.frame_rate, start_frame=start, cut=False)
        expected = generate_training_clip(clip, 64, 64, 97, group.frame_rate, start_frame=start)
        assert scene.frames.shape[0] == start + 97 + 1
        assert np.array_equal(trainer.data.frames[clip].numpy(), expected.frames)
        assert np.array_equal(scene.frames[start : start + 97], expected.frames)
        assert trainer.audio_latents[index].shape[1] == audio_frames  # 97 frames' time: round(97 / fps x 25)
        for stage in (1, 2):
            frames, height, width = trainer.geometry[stage]
            assert frames == 13  # 97 pixel frames
            assert trainer.seam_video_latents[stage].shape[1] == frames * height * width
        draw = copy_draw([clip] * 4, 0.5, 0.0, 2)._replace(group=index)
        seen = transformer_inputs(trainer, draw)
        assert seen["hidden_states"].shape[1] == 13 * trainer.geometry[2][1] * trainer.geometry[2][2]
        assert seen["audio_hidden_states"].shape[1] == audio_frames


def test_the_decoded_ball_row_loss_skips_the_frames_the_held_latents_decode_to(tmp_path):
    argv = ["--stage", "transformer", "--steps", "1", "--out", str(tmp_path), *TOY, "--decoded-ball-row-gain", "8"]
    trainer = StageTrainer(parse_args(argv))
    clips = trainer.groups[0].seam_clips.tolist()[:4]
    draw = copy_draw(clips, 0.5, 0.0, 2)  # sample 0 holds 2 latent frames: its pixel frames 0 ... 8 are given
    estimate = trainer.seam_video_latents[2][trainer.seam_row[torch.tensor(clips)]]

    def loss() -> float:
        with torch.no_grad():
            return float(trainer.decoded_ball_row_loss(draw, estimate, draw.video_sigma))

    baseline, frames, original = loss(), trainer.data.frames, trainer.data.frames[clips[0]].clone()
    frames[clips[0], :9] = original[:9].flip(1)  # the ball's rows turned upside down in the given frames
    assert loss() == pytest.approx(baseline, rel=1e-6)
    frames[clips[0]] = original
    frames[clips[0], 9:] = original[9:].flip(1)  # and in the generated ones
    assert loss() != pytest.approx(baseline, rel=1e-3)
