"""Training for long form's later windows: clips cut mid-scene, and samples that hold their first latent video frames
clean (timestep 0, no loss) as every window after the first does."""

import numpy as np
import pytest
import torch

from training.data import mid_scene_start, render_clips
from training.train import (
    CONTINUATION_MAX_HELD_FRAMES,
    StageTrainer,
    TransformerDraw,
    compiled_graph_count,
    draw_held_frames,
    draw_transformer_batch,
    parse_args,
    train,
    video_token_levels,
)
from world import cut_clip, generate_clip, generate_training_clip

TOY = ["--variant", "tiny", "--height", "64", "--width", "64", "--num-frames", "17", "--num-clips", "4"]
TOY += ["--batch-size", "4", "--log-every", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    out = tmp_path_factory.mktemp("continuation")  # fresh tiny components: what is checked holds for any weights
    return StageTrainer(parse_args(["--stage", "transformer", "--steps", "1", "--out", str(out), *TOY]))


def test_a_clip_cut_mid_scene_starts_there_with_its_impacts_shifted():
    full = generate_clip(7, 64, 64, 97, 24.0)
    start = 30
    cut = cut_clip(full, start, 41)
    assert np.array_equal(cut.frames, full.frames[start : start + 41])
    first_sample = round(start / 24.0 * full.sampling_rate)
    assert np.array_equal(cut.audio, full.audio[first_sample : first_sample + cut.audio.shape[0]])
    assert cut.audio.shape[0] == round(41 / 24.0 * full.sampling_rate)
    inside = [impact for impact in full.impacts if start <= impact.frame < start + 41]
    assert inside and len(inside) < len(full.impacts)  # some impacts before the cut, dropped
    assert [impact.frame for impact in cut.impacts] == [impact.frame - start for impact in inside]
    for before, after in zip(inside, cut.impacts, strict=True):
        assert after.time == pytest.approx(before.time - start / 24.0)
        assert after.sample == round(after.time * full.sampling_rate)
    # The generators cut the same way: the scene's frames and impacts from `start_frame` on.
    assert np.array_equal(generate_clip(7, 64, 64, 41, 24.0, start_frame=start).frames, cut.frames)
    rich = generate_training_clip(3, 64, 64, 41, 30.0, start_frame=start)
    longer = generate_training_clip(3, 64, 64, 41 + start, 30.0)  # the same scene: it lasts as long
    assert np.array_equal(rich.frames, longer.frames[start:])
    assert [impact.frame for impact in rich.impacts] == [i.frame - start for i in longer.impacts if i.frame >= start]
    with pytest.raises(ValueError, match="start_frame"):
        cut_clip(full, 97)


def test_a_share_of_the_training_clips_start_mid_scene_and_the_rest_as_before():
    seeds = range(20)
    starts = [mid_scene_start(seed, 17, 0.5) for seed in seeds]
    assert 0 < sum(start > 0 for start in starts) < 20 and all(0 <= start < 17 for start in starts)
    clips = render_clips(seeds, 32, 32, 17, 24.0, mid_scene_fraction=0.5)
    assert clips.start_frames == starts
    for position, seed in enumerate(seeds):
        expected = generate_clip(seed, 32, 32, 17, 24.0, start_frame=starts[position])
        assert np.array_equal(clips.frames[position].numpy(), expected.frames)
        assert clips.impact_frames[position] == [impact.frame for impact in expected.impacts]
    unchanged = render_clips(seeds[:3], 32, 32, 17, 24.0)  # fraction 0: the clips earlier runs trained on
    assert unchanged.start_frames == [0, 0, 0]
    assert np.array_equal(unchanged.frames[1].numpy(), generate_clip(1, 32, 32, 17, 24.0).frames)
    with pytest.raises(ValueError, match="mid_scene_fraction"):
        render_clips(seeds, 32, 32, 17, 24.0, mid_scene_fraction=1.5)


def test_held_frames_are_drawn_only_where_the_video_is_denoised():
    generator = torch.Generator().manual_seed(0)
    video_sigma = torch.tensor([0.5, 0.0] * 500)
    held = draw_held_frames(video_sigma, 0.3, generator)
    assert held[1::2].eq(0).all()  # a clean video has nothing to continue
    chosen = held[::2]
    assert set(chosen.unique().tolist()) == set(range(CONTINUATION_MAX_HELD_FRAMES + 1))
    assert 0.2 < float((chosen > 0).float().mean()) < 0.4
    assert draw_transformer_batch(8, 10, generator).held_frames is None  # off unless asked for
    levels = video_token_levels(torch.tensor([0.7, 0.7]), torch.tensor([2, 0]), num_tokens=12, latent_frames=3)
    assert levels[0].tolist() == pytest.approx([0.0] * 8 + [0.7] * 4) and levels[1].eq(0.7).all()


def continuation_draw(stage: int = 1) -> TransformerDraw:
    # A2V continuation (2 frames held), T2AV continuation (1 held), joint, video clean.
    return TransformerDraw(
        indices=torch.tensor([0, 1, 2, 3]),
        stage=stage,
        video_sigma=torch.tensor([0.6, 0.8, 0.5, 0.0]),
        audio_sigma=torch.tensor([0.0, 0.8, 0.5, 0.3]),
        caption_dropped=torch.zeros(4, dtype=torch.bool),
        isolate=False,
        held_frames=torch.tensor([2, 1, 0, 0]),
    )


def test_held_video_frames_go_in_clean_at_timestep_0_beside_the_steps_modality_sigma(trainer):
    seen = {}
    hook = trainer.transformer.register_forward_pre_hook(lambda _, __, kw: seen.update(kw), with_kwargs=True)
    try:
        assert torch.isfinite(trainer.transformer_loss(continuation_draw()))
    finally:
        hook.remove()
    scale = trainer.transformer.config.timestep_scale_multiplier
    frames, height, width = trainer.geometry[1]
    per_frame = height * width
    timestep = seen["timestep"] / scale
    assert timestep.shape == (4, frames * per_frame)
    assert timestep[0, : 2 * per_frame].eq(0).all() and timestep[0, 2 * per_frame :].allclose(torch.tensor(0.6))
    assert timestep[1, :per_frame].eq(0).all() and timestep[1, per_frame:].allclose(torch.tensor(0.8))
    assert timestep[2].allclose(torch.tensor(0.5)) and timestep[3].eq(0).all()
    # The held tokens go in as the clean latents themselves; the others noised.
    clean = trainer.video_latents[1][:2]
    torch.testing.assert_close(seen["hidden_states"][0, : 2 * per_frame], clean[0, : 2 * per_frame], rtol=0, atol=0)
    assert not torch.allclose(seen["hidden_states"][0, 2 * per_frame :], clean[0, 2 * per_frame :])
    torch.testing.assert_close(seen["hidden_states"][1, :per_frame], clean[1, :per_frame], rtol=0, atol=0)
    # Modality sigmas as the pipelines run a window: the step's sigma; audio held clean (A2V) has timestep 0.
    torch.testing.assert_close(seen["sigma"] / scale, torch.tensor([0.6, 0.8, 0.5, 0.3]))
    torch.testing.assert_close(seen["audio_sigma"] / scale, torch.tensor([0.6, 0.8, 0.5, 0.3]))
    torch.testing.assert_close(seen["audio_timestep"] / scale, torch.tensor([0.0, 0.8, 0.5, 0.3]))


def loss_with_video_output_changed(trainer: StageTrainer, tokens: slice, sample: int) -> float:
    """The loss of `continuation_draw` with the transformer's video output offset on `tokens` of `sample`."""

    def offset(_, __, output):
        video, audio = output
        video = video.clone()
        video[sample, tokens] += 10.0
        return video, audio

    hook = trainer.transformer.register_forward_hook(offset) if tokens.stop else None
    torch.manual_seed(0)  # the same noise each time
    try:
        with torch.no_grad():
            return float(trainer.transformer_loss(continuation_draw()))
    finally:
        if hook is not None:
            hook.remove()


def test_the_loss_ignores_the_held_tokens_and_reads_the_others(trainer):
    _, height, width = trainer.geometry[1]
    per_frame = height * width
    baseline = loss_with_video_output_changed(trainer, slice(0, 0), 0)
    held = loss_with_video_output_changed(trainer, slice(0, 2 * per_frame), 0)
    denoised = loss_with_video_output_changed(trainer, slice(2 * per_frame, 3 * per_frame), 0)
    assert held == pytest.approx(baseline, rel=1e-6)
    assert denoised > baseline + 1.0
    # Sample 1 holds one frame only: its second frame is a target.
    assert loss_with_video_output_changed(trainer, slice(per_frame, 2 * per_frame), 1) > baseline + 1.0


def test_transformer_trains_with_continuation_and_mid_scene_clips_in_both_worlds(tmp_path):
    for world in ("original", "rich"):
        argv = ["--stage", "transformer", "--steps", "2", "--out", str(tmp_path / world), "--world", world]
        argv += ["--continuation-fraction", "1", "--mid-scene-fraction", "1", "--frame-rates", "24", "30", *TOY]
        state = train(parse_args(argv))
        assert state["step"] == 2 and all(np.isfinite(entry["loss"]) for entry in state["log"])


def test_continuation_arguments_are_checked():
    base = ["--stage", "transformer", "--steps", "1", "--out", "x"]
    for bad in (["--continuation-fraction", "1.5"], ["--mid-scene-fraction", "-0.1"], ["--num-frames", "9"]):
        with pytest.raises(SystemExit):
            parse_args([*base, *bad])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--continuation-fraction", "0.3"])
    args = parse_args(base)
    assert (args.continuation_fraction, args.mid_scene_fraction) == (0.3, 0.5)
    assert parse_args(["--stage", "audio_vae", "--steps", "1", "--out", "x"]).mid_scene_fraction == 0.0


@pytest.mark.slow
def test_compiled_training_at_three_frame_rates_compiles_a_bounded_number_of_graphs(tmp_path, capsys):
    """Dynamic token counts: every stage and frame rate shares the graphs traced before the first step; the steps
    that follow compile nothing more (aot_eager: the same graphs dynamo makes for inductor, without code generation)."""
    torch._dynamo.reset()
    argv = ["--stage", "transformer", "--steps", "12", "--out", str(tmp_path), "--world", "rich", "--compile"]
    argv += ["--compile-backend", "aot_eager", "--compile-dynamic", "--freeze-text-encoder"]
    argv += ["--frame-rates", "24", "25", "30", *TOY]
    argv += ["--num-clips", "6"]
    before = compiled_graph_count()
    state = train(parse_args(argv))
    traced = int(capsys.readouterr().out.split(" graphs (dynamic shapes)")[0].rsplit(": ", 1)[1])
    # 4 on these toy sizes (stage 1's 1 x 1 latent grid specialises), 12 if every shape were static.
    assert 2 <= traced <= 4
    assert compiled_graph_count() - before == traced  # 12 steps of every stage, rate and case: no recompile
    assert state["step"] == 12
    torch._dynamo.reset()
