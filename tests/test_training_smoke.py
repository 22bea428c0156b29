"""The staged training script runs every stage on CPU at toy size, saves loadable components and resumes."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2VocoderWithBWE
from transformers import Gemma3ForConditionalGeneration

from training import config
from training.data import frames_to_video, render_clips
from training.eval_autoencoders import evaluate_video
from training.export import export
from training.train import (
    STAGES,
    CaptionCache,
    StageTrainer,
    TransformerDraw,
    align_vocoder_channels,
    audio_onset_mask,
    audio_tail_mask,
    ball_row_loss,
    draw_transformer_batch,
    impact_frame_weight,
    latent_impact_mask,
    latent_motion_mask,
    modality_sigmas,
    parse_args,
    soft_ball_rows,
    stereo_mel,
    text_conditioning,
    train,
)
from world import generate_clip
from world.detectors import ball_rows

TOY = ["--variant", "tiny", "--height", "64", "--width", "64", "--num-frames", "17", "--num-clips", "3"]
TOY += ["--batch-size", "2", "--log-every", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkpoints")
    states = {
        stage: train(parse_args(["--stage", stage, "--steps", "2", "--out", str(out), *TOY])) for stage in STAGES
    }
    return out, states


def test_every_stage_trains_and_saves(trained):
    out, states = trained
    for stage in STAGES:
        assert states[stage]["step"] == 2
        assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in states[stage]["log"])
        settings = json.loads((out / f"{stage}_settings.json").read_text())
        assert settings["runs"][0]["steps"] == 2 and settings["runs"][0]["variant"] == "tiny"
    for key in ("vae", "audio_vae", "vocoder", "latent_upsampler", "transformer", "connectors", "text_encoder"):
        assert (out / key / "config.json").exists(), key
    vae = AutoencoderKLLTX2Video.from_pretrained(out / "vae")
    # The saved VAE carries the latent statistics the pipeline normalises with (not the identity defaults).
    assert not torch.allclose(vae.latents_std, torch.ones_like(vae.latents_std))


def test_resume_continues_the_step_count_and_changes_weights(trained):
    out, _ = trained
    before = LTX2VideoTransformer3DModel.from_pretrained(out / "transformer").state_dict()
    state = train(parse_args(["--stage", "transformer", "--steps", "1", "--resume", "--out", str(out), *TOY]))
    after = LTX2VideoTransformer3DModel.from_pretrained(out / "transformer").state_dict()
    assert state["step"] == 3
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert len(json.loads((out / "transformer_settings.json").read_text())["runs"]) == 2


def test_cached_captions_condition_the_transformer_as_encoding_them_each_step_does():
    components = config.build_components(seed=0, variant="tiny")
    tokenizer, text_encoder, connectors = (components[key] for key in ("tokenizer", "text_encoder", "connectors"))
    world_captions = [generate_clip(seed, 32, 32, 9, 24.0).caption for seed in range(4)]
    # A batch unlike the one the cache encoded: repeats, another order, the dropped (empty) caption.
    batch = [world_captions[2], "", world_captions[0], world_captions[2], world_captions[3]]
    cache = CaptionCache(tokenizer, text_encoder, world_captions, "cpu")
    with torch.no_grad():
        cached = cache.conditioning(connectors, cache.ids(batch))
        encoded = text_conditioning(tokenizer, text_encoder, connectors, batch, "cpu")
    for cached_part, encoded_part in zip(cached, encoded, strict=True):
        torch.testing.assert_close(cached_part, encoded_part, rtol=0, atol=1e-6)
    assert not torch.allclose(cached[0][0], cached[0][1])  # the captions do condition differently


def test_loss_weights_mark_the_ball_tokens_and_the_onset_frames():
    clips = render_clips([3], 64, 64, 17, 24.0)
    video = frames_to_video(clips.frames)
    mask = latent_motion_mask(video, (3, 4, 4)).view(3, 4, 4)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert 0 < mask.mean() < 0.5  # the ball's cells, not the whole frame
    # Frame 0 alone is latent frame 0: the ball's first position marks the cells of the pixels it covers there.
    first = latent_motion_mask(video[:, :, :1].expand(-1, -1, 17, -1, -1), (3, 4, 4)).view(3, 4, 4)
    assert torch.equal(first[0], first[1]) and first[0].sum() > 0
    weight = impact_frame_weight([[10, 30], []], start=8, window=9, gain=4.0).flatten(1)  # frames 8 ... 16
    assert weight[0].tolist() == [5.0] * 5 + [1.0] * 4 and weight[1].eq(1).all()  # frames 8-12 are within 2 of 10
    onsets = audio_onset_mask([[12], []], 24.0, 20)
    assert onsets[0].nonzero().flatten().tolist() == [12, 13] and onsets[1].sum() == 0  # 0.5 s -> frame 12 of 25/s
    tails = audio_tail_mask([[12, 24], []], 24.0, 40)  # onsets at 0.5 s and 1 s: frames 12-13 and 25-26
    assert tails[0].nonzero().flatten().tolist() == list(range(14, 25)) + list(range(27, 38)) and tails[1].sum() == 0
    # Impacts at pixel frames 0, 8 and 9 of 17: latent frames 0 (frame 0), 1 (frames 1-8) and 2 (frames 9-16).
    impacts = latent_impact_mask([[8], [0, 9], []], (3, 2, 2), stride=8).view(3, 3, 4)
    assert impacts[0, :, 0].tolist() == [0.0, 1.0, 0.0] and impacts[1, :, 0].tolist() == [1.0, 0.0, 1.0]
    assert impacts[2].sum() == 0 and torch.equal(impacts.amin(dim=2), impacts.amax(dim=2))  # whole latent frames


def test_video_vae_trains_with_impact_frames_weighted(tmp_path):
    state = train(
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", str(tmp_path), "--impact-frame-gain", "4", *TOY])
    )
    assert state["step"] == 1 and (tmp_path / "vae" / "config.json").is_file()


def test_soft_ball_rows_read_the_row_the_sync_detector_reads():
    clip = generate_clip(seed=900000, height=128, width=128, num_frames=33, frame_rate=24.0)
    detected = ball_rows(clip.frames)  # pixels; NaN where no ball is seen
    video = frames_to_video(torch.from_numpy(clip.frames)[None])
    soft, counts = soft_ball_rows(video)
    seen = ~torch.from_numpy(detected).isnan()
    assert seen.sum() > 20 and torch.equal(seen, counts[0] >= 2)
    error_px = (soft[0][seen] * 128 - torch.from_numpy(detected)[seen].float()).abs()
    assert (
        error_px.max() < 0.25
    )  # 0.05-0.09 px measured: the ramp weighs the ball's anti-aliased edge a little differently


def test_ball_row_loss_is_zero_on_the_clip_itself_and_pulls_a_shifted_ball_back():
    clip = generate_clip(seed=900001, height=64, width=64, num_frames=17, frame_rate=24.0)
    video = frames_to_video(torch.from_numpy(clip.frames)[None])
    weight = torch.ones(1, 1, video.shape[2], 1, 1)
    assert float(ball_row_loss(video, video, weight)) == 0.0
    shifted = torch.roll(video, shifts=-3, dims=-2).requires_grad_(True)  # the ball 3 rows higher
    loss = ball_row_loss(shifted, video, weight)
    loss.backward()
    assert float(loss.detach()) > 1.0 / 64 and shifted.grad.abs().sum() > 0


def test_video_vae_trains_with_the_ball_row_loss(tmp_path):
    argv = ["--stage", "video_vae", "--steps", "1", "--out", str(tmp_path), "--ball-row-gain", "4"]
    state = train(parse_args([*argv, "--impact-frame-gain", "2", *TOY]))
    assert state["step"] == 1 and (tmp_path / "vae" / "config.json").is_file()


def test_transformer_adds_the_ball_row_loss_of_its_decoded_estimate(trained, tmp_path):
    out, _ = trained
    losses = {}
    for gain in ("0", "4"):
        folder = tmp_path / gain
        shutil.copytree(out, folder)
        argv = ["--stage", "transformer", "--steps", "1", "--resume", "--decoded-ball-row-gain", gain]
        losses[gain] = train(parse_args([*argv, "--out", str(folder), *TOY]))["log"][-1]["loss"]
    # The same weights, draws and noise: the transformer's loss, plus the decoded ball's row error.
    assert losses["4"] > losses["0"] > 0


def test_a_clean_stream_has_timestep_0_and_the_other_streams_sigma_as_its_modality_sigma(trained):
    out, _ = trained
    argv = ["--stage", "transformer", "--steps", "1", "--resume", "--out", str(out), *TOY, "--batch-size", "4"]
    trainer = StageTrainer(parse_args(argv))  # the RoPE coordinates are prepared for the batch size
    seen = {}
    trainer.transformer.register_forward_pre_hook(lambda _, __, kwargs: seen.update(kwargs), with_kwargs=True)
    # Joint, audio clean (audio to video), video clean (video to audio), independent.
    video_sigma, audio_sigma = torch.tensor([0.5, 0.7, 0.0, 0.4]), torch.tensor([0.5, 0.0, 0.3, 0.9])
    draw = TransformerDraw(torch.tensor([0, 1, 2, 0]), 1, video_sigma, audio_sigma, torch.zeros(4, dtype=bool), False)
    assert torch.isfinite(trainer.transformer_loss(draw))
    scale = trainer.transformer.config.timestep_scale_multiplier
    # Video timesteps per token (B, tokens), every token at its sample's sigma here (no leading frames held).
    assert seen["timestep"].shape == seen["hidden_states"].shape[:2]
    torch.testing.assert_close(seen["timestep"], (video_sigma * scale)[:, None].expand_as(seen["timestep"]))
    torch.testing.assert_close(seen["audio_timestep"], audio_sigma * scale)
    torch.testing.assert_close(seen["sigma"], torch.tensor([0.5, 0.7, 0.3, 0.4]) * scale)
    torch.testing.assert_close(seen["audio_sigma"], torch.tensor([0.5, 0.7, 0.3, 0.9]) * scale)
    assert seen["use_cross_timestep"]
    torch.testing.assert_close(modality_sigmas(video_sigma, audio_sigma)[1], torch.tensor([0.5, 0.7, 0.3, 0.9]))


def test_frozen_text_encoder_trains_the_connectors_and_stops_at_the_deadline(trained):
    out, _ = trained
    text_before = Gemma3ForConditionalGeneration.from_pretrained(out / "text_encoder").state_dict()
    connectors_before = LTX2TextConnectors.from_pretrained(out / "connectors").state_dict()
    steps_before = json.loads((out / "transformer_state.json").read_text())["step"]
    # --stop-at in the past: one step, then save (with the impacts' audio tails and video frames weighted too).
    argv = ["--stage", "transformer", "--steps", "5", "--resume", "--freeze-text-encoder", "--stop-at", "0"]
    argv += ["--audio-tail-gain", "2", "--video-impact-gain", "2"]
    state = train(parse_args([*argv, "--out", str(out), *TOY]))
    assert state["step"] == steps_before + 1
    text_after = Gemma3ForConditionalGeneration.from_pretrained(out / "text_encoder").state_dict()
    connectors_after = LTX2TextConnectors.from_pretrained(out / "connectors").state_dict()
    assert all(torch.equal(text_before[name], text_after[name]) for name in text_before)
    assert any(not torch.equal(connectors_before[name], connectors_after[name]) for name in connectors_before)


def test_transformer_trains_on_the_rich_world_at_several_frame_rates(trained, tmp_path):
    out, _ = trained
    folder = tmp_path / "rates"
    shutil.copytree(out, folder)
    argv = ["--stage", "transformer", "--steps", "1", "--resume", "--out", str(folder), "--world", "rich"]
    argv += ["--frame-rates", "24", "30", "--freeze-text-encoder", *TOY, "--num-clips", "4"]
    trainer = StageTrainer(parse_args(argv))
    # Two clips a rate; each rate's audio latents as long as its clips (17 frames: 0.71 s and 0.57 s at 25 a second).
    assert [(group.frame_rate, group.start, group.count) for group in trainer.groups] == [(24.0, 0, 2), (30.0, 2, 2)]
    assert [latents.shape[1] for latents in trainer.audio_latents] == [round(17 / 24 * 25), round(17 / 30 * 25)]
    for group in range(2):  # a batch of either rate runs, its clips drawn from that rate alone
        draw = TransformerDraw(
            torch.tensor([0, 1]) + 2 * group,
            1,
            torch.full((2,), 0.5),
            torch.zeros(2),
            torch.zeros(2, dtype=bool),
            False,
            group,
        )
        assert torch.isfinite(trainer.transformer_loss(draw))
    state = train(parse_args(argv))
    assert state["step"] == json.loads((out / "transformer_state.json").read_text())["step"] + 1


def test_replayed_original_world_clips_train_as_a_group_of_their_own(trained, tmp_path):
    out, _ = trained
    folder = tmp_path / "replay"
    shutil.copytree(out, folder)
    argv = ["--stage", "transformer", "--steps", "1", "--resume", "--out", str(folder), "--world", "rich"]
    argv += ["--frame-rates", "24", "30", *TOY, "--num-clips", "4", "--replay-clips", "2", "--mid-scene-fraction", "1"]
    trainer = StageTrainer(parse_args(argv))
    groups = [(group.frame_rate, group.start, group.count) for group in trainer.groups]
    assert groups == [(24.0, 0, 2), (30.0, 2, 2), (24.0, 4, 2)]
    assert trainer.num_clips == 6 and len(trainer.data.captions) == 6
    assert trainer.args.num_clips == 4  # as given, and so recorded: a rerun from the record renders the same clips
    # The replayed clips are the original world's, from rest (the rich ones here all start mid-scene).
    assert trainer.data.start_frames[4:] == [0, 0] and all(start > 0 for start in trainer.data.start_frames[:4])
    assert trainer.data.captions[4:] == [generate_clip(seed, 64, 64, 17, 24.0).caption for seed in (4, 5)]
    draws = {
        draw_transformer_batch(2, 6, torch.Generator().manual_seed(seed), trainer.groups).group for seed in range(40)
    }
    assert draws == {0, 1, 2}  # the replay group is drawn like the frame rates' groups
    state = train(parse_args(argv))
    assert state["step"] == json.loads((out / "transformer_state.json").read_text())["step"] + 1


def test_transformer_resumes_from_an_exported_folder_at_its_step_count(trained, tmp_path):
    out, _ = trained
    exported = tmp_path / "exported"
    export(out, exported, variant="tiny")
    exported_steps = json.loads((exported / "training_settings.json").read_text())["steps"]["transformer"]
    state = train(parse_args(["--stage", "transformer", "--steps", "1", "--resume", "--out", str(exported), *TOY]))
    assert state["step"] == exported_steps + 1
    runs = json.loads((exported / "transformer_settings.json").read_text())["runs"]
    assert len(runs) >= 2 and runs[-1]["start_step"] == exported_steps  # the exported run history is kept
    # Exported again: the transformer's new step count, the other stages' record from the first export.
    export(exported, tmp_path / "again", variant="tiny")
    record = json.loads((tmp_path / "again" / "training_settings.json").read_text())
    assert record["steps"]["transformer"] == exported_steps + 1 and record["steps"]["video_vae"] > 0


@pytest.mark.slow
def test_compiled_transformer_trains_and_reuses_its_compile_cache(trained, capsys):
    out, _ = trained
    cache = out / "compile_cache.bin"
    compiled = ["--stage", "transformer", "--steps", "3", "--resume", "--compile", "--compile-cache", str(cache)]
    state = train(parse_args([*compiled, "--out", str(out), *TOY]))
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in state["log"][-3:])
    assert cache.is_file() and cache.stat().st_size > 0
    torch._dynamo.reset()
    train(parse_args([*compiled, "--out", str(out), *TOY]))
    assert f"loaded compile cache artifacts from {cache}" in capsys.readouterr().out


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit):  # replay is of the original world beside the rich one
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--replay-clips", "8"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--world", "rich", "--replay-clips", "-1"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--frame-rates", "24", "30"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--frame-rates", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "0", "--out", "x"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--num-frames", "20"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--impact-frame-gain", "-1"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--audio-tail-gain", "-2"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--video-impact-gain", "nan"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--ball-row-gain", "-1"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "transformer", "--steps", "1", "--out", "x", "--decoded-ball-row-gain", "-4"])


def test_shipped_embedded_model_fits_the_budget_and_records_its_training():
    folder = Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model"
    if not (folder / "model_index.json").is_file():
        pytest.skip("no embedded model shipped in this checkout")
    size_mb = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    assert size_mb <= 60.0
    record = json.loads((folder / "training_settings.json").read_text())
    assert set(record["components"].values()) == {"trained"}
    assert record["steps"]["transformer"] > 0 and record["steps"]["video_vae"] > 0


def test_shipped_video_vae_keeps_the_clip_and_its_impacts_through_encode_and_decode():
    folder = Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model"
    if not (folder / "model_index.json").is_file():
        pytest.skip("no embedded model shipped in this checkout")
    scores = evaluate_video(folder / "vae", num_clips=1)
    assert scores["video PSNR (dB)"] > 28.0  # 33 dB on 24 held-out clips (training/README.md)
    assert 0.0 <= scores["impacts seen within 2 frames"] <= 1.0
    by_speed = [name for name in scores if name.startswith("impacts seen within 2 frames, speed ")]
    assert len(by_speed) == 3  # slow, middle and fast impacts (world.scene.IMPACT_SPEED_BANDS)
    assert scores["impacts shown that are real (within 2 frames)"] >= 0.5


def channel_correlation(waveform: torch.Tensor) -> float:
    left, right = waveform[0, 0], waveform[0, 1]
    return float(torch.dot(left, right) / (left.norm() * right.norm()))


def test_vocoder_channels_in_antiphase_are_flipped_exactly():
    vocoder = config.build_components(seed=0, variant="tiny")["vocoder"].eval()
    mel = stereo_mel(torch.from_numpy(generate_clip(5, 32, 32, 17, 24.0).audio[None]))
    with torch.no_grad():
        vocoder.vocoder.conv_out.weight.copy_(
            vocoder.vocoder.conv_out.weight[:1].expand_as(vocoder.vocoder.conv_out.weight)
        )
        in_phase = vocoder(mel)
        vocoder.vocoder.conv_out.weight[1].neg_()  # what magnitude-only losses cannot tell apart
        assert channel_correlation(vocoder(mel)) < -0.99
        assert align_vocoder_channels(vocoder, mel) == [1]
        torch.testing.assert_close(vocoder(mel), in_phase, rtol=0, atol=0)
        assert align_vocoder_channels(vocoder, mel) == []


def test_shipped_vocoder_channels_are_in_phase():
    """A mono downmix (one speaker, the benchmark's detectors) of antiphase channels cancels the sound."""
    folder = Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model" / "vocoder"
    if not (folder / "config.json").is_file():
        pytest.skip("no embedded model shipped in this checkout")
    vocoder = LTX2VocoderWithBWE.from_pretrained(folder, torch_dtype=torch.float32).eval()
    mel = stereo_mel(torch.from_numpy(generate_clip(900_001, 32, 32).audio[None]))
    with torch.no_grad():
        assert channel_correlation(vocoder(mel)) > 0.9
