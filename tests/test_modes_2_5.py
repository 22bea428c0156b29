"""Every mode on LTX-2.5: a tiny model in Lightricks' per-component layout, written here and loaded the way users load
the real one, runs each mode end to end on the CPU with 2.5's own sampling.

What makes a run 2.5's is checked on the transformer's own inputs: in a distilled text-to-AV run (the reference's
`DistilledPipeline`) each stage-1 step is the ancestral Euler step (`sampling_2_5.euler_ancestral_step`, whose
parity with the reference is in test_parity_2_5.py) with noise drawn from a generator seeded `seed + 10000`, video
before audio; plain Euler would give other latents.
"""

import math
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.hooks.group_offloading import _is_group_offload_enabled

from ltx_pipeline import (
    A2VidPipelineTwoStage,
    RetakePipeline,
    StageDecoded,
    TI2VidTwoStagesPipeline,
    V2AudPipeline,
    tiny,
    versions,
)
from ltx_pipeline.conditioning import ImageCondition, prepare_image
from ltx_pipeline.constants import DISTILLED_STAGE_1_SIGMAS
from ltx_pipeline.media import probe_mp4, save_output
from ltx_pipeline.pipeline_long_form import LongFormPipeline
from ltx_pipeline.sampling_2_5 import euler_ancestral_step
from ltx_pipeline.speed.acceleration import SpeedOptions, place_pipeline
from tests import official_layout_2_5
from tests.test_pipeline_a2v import write_clip
from tests.test_pipeline_v2a import write_video

PROMPT = "a red ball bounces on a metal floor"
SMALL = {"prompt": PROMPT, "height": 64, "width": 64, "seed": 3}
STAGE_1_STEPS = len(DISTILLED_STAGE_1_SIGMAS) - 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    components = tiny.build_tiny_components("2.5")
    destination = tmp_path_factory.mktemp("ltx25") / "LTX-2.5"
    return official_layout_2_5.write_official_folder(destination, components, tiny.build_tiny_duration_head())


@pytest.fixture(scope="module")
def t2av(folder: Path) -> TI2VidTwoStagesPipeline:
    return TI2VidTwoStagesPipeline.from_model(str(folder), torch_dtype=torch.float32)


def record_passes(pipe) -> list[dict]:
    """Each transformer pass's latents, timesteps and velocities, in order."""
    passes = []

    def hook(module, args, kwargs, output):
        passes.append(
            {
                "video": kwargs["hidden_states"].clone(),
                "audio": kwargs["audio_hidden_states"].clone(),
                "video_timestep": kwargs["timestep"].clone(),
                "audio_timestep": kwargs["audio_timestep"].clone(),
                "video_velocity": output[0].float().clone(),
                "audio_velocity": output[1].float().clone(),
            }
        )

    return passes, pipe.transformer.register_forward_hook(hook, with_kwargs=True)


def expected_next(passes: list[dict], step: int, stream: str, noise: torch.Tensor | None) -> torch.Tensor:
    """Stage-1 latents after `step` from that step's pass: ancestral with `noise`, plain Euler without."""
    sigma, sigma_next = DISTILLED_STAGE_1_SIGMAS[step], DISTILLED_STAGE_1_SIGMAS[step + 1]
    latents, velocity = passes[step][stream], passes[step][f"{stream}_velocity"]
    generated = passes[step][f"{stream}_timestep"][..., None] > 0  # held tokens have timestep 0
    estimate = latents - sigma * velocity
    if noise is None:
        stepped = latents + (sigma_next - sigma) * velocity
    else:
        stepped = euler_ancestral_step(latents, estimate, sigma, sigma_next, noise)
    return torch.where(generated, stepped, latents)


def assert_stage_1_sampler(passes: list[dict], seed: int, streams: tuple[str, ...], ancestral: bool) -> None:
    """Replays stage 1 from the recorded passes; the latents of each next pass must be the sampler's step."""
    generator = torch.Generator().manual_seed(seed + 10_000)
    for step in range(STAGE_1_STEPS - 1):  # the last step lands on the clean estimate, the same for both samplers
        for stream in streams:
            noise = torch.randn(passes[step][stream].shape, generator=generator) if ancestral else None
            expected = expected_next(passes, step, stream, noise)
            torch.testing.assert_close(passes[step + 1][stream], expected, rtol=1e-4, atol=1e-5)
            other = expected_next(passes, step, stream, None if ancestral else torch.randn_like(expected))
            assert not torch.allclose(passes[step + 1][stream], other, atol=1e-3)  # the check tells them apart


def assert_playable(path: Path, num_frames: int, frame_rate: float) -> None:
    info = probe_mp4(path)
    assert info.num_frames == num_frames
    assert info.audio_duration_s == pytest.approx(num_frames / frame_rate, abs=0.05)


def test_loaded_model_is_named_2_5_with_its_sampler(t2av: TI2VidTwoStagesPipeline) -> None:
    assert t2av.model_version == "2.5"
    assert t2av.model_label.startswith("LTX-2.5")
    assert t2av.stage_1_sampler("distilled") == "euler_ancestral"
    assert t2av.stage_1_sampler("dev") == "euler"
    assert t2av.duration_head is not None


def test_text_to_av_steps_stage_1_ancestrally(t2av: TI2VidTwoStagesPipeline, tmp_path: Path) -> None:
    passes, handle = record_passes(t2av)
    try:
        output = t2av(**SMALL, num_frames=17)
    finally:
        handle.remove()
    assert output.recipe["model_version"] == "2.5"
    assert output.recipe["stage_1_sampler"] == "euler_ancestral"
    assert_stage_1_sampler(passes[:STAGE_1_STEPS], SMALL["seed"], ("video", "audio"), ancestral=True)
    mp4, _ = save_output(output, tmp_path / "t2av.mp4")
    assert_playable(mp4, 17, output.frame_rate)
    assert output.audio.num_samples == math.floor(17 / output.frame_rate * output.audio.sampling_rate)


def test_dev_mode_stays_euler_on_2_5(t2av: TI2VidTwoStagesPipeline) -> None:
    output = t2av(**SMALL, num_frames=9, mode="dev", num_inference_steps=2)
    assert output.recipe["stage_1_sampler"] == "euler"
    assert output.frames.shape == (9, 64, 64, 3)


def test_audio_to_video_holds_the_clip_and_steps_the_video_with_euler_as_the_reference(
    t2av: TI2VidTwoStagesPipeline, tmp_path: Path
) -> None:
    pipe = A2VidPipelineTwoStage.from_pipe(t2av)
    clip = tmp_path / "clip.wav"
    write_clip(clip, seconds=1.0)
    passes, handle = record_passes(pipe)
    try:
        output = pipe(audio=clip, **SMALL, num_frames=17)
    finally:
        handle.remove()
    # The reference's audio-to-video pipeline steps with plain Euler on 2.5 too (the ancestral stage 1 is its
    # distilled text/image pipeline's).
    assert output.recipe["model_version"] == "2.5" and output.recipe["stage_1_sampler"] == "euler"
    assert_stage_1_sampler(passes[:STAGE_1_STEPS], SMALL["seed"], ("video",), ancestral=False)
    assert all(torch.equal(p["audio"], passes[0]["audio"]) for p in passes[:STAGE_1_STEPS])
    mp4, _ = save_output(output, tmp_path / "a2v.mp4")
    assert_playable(mp4, 17, output.frame_rate)


def test_video_to_audio_keeps_the_frames_and_steps_the_audio_with_euler(
    t2av: TI2VidTwoStagesPipeline, tmp_path: Path
) -> None:
    pipe = V2AudPipeline.from_pipe(t2av)
    source = write_video(tmp_path / "in.mp4", num_frames=17)
    passes, handle = record_passes(pipe)
    try:
        output = pipe(video=source, prompt=PROMPT, seed=SMALL["seed"])
    finally:
        handle.remove()
    assert output.recipe["model_version"] == "2.5" and output.recipe["stage_1_sampler"] == "euler"
    assert_stage_1_sampler(passes, SMALL["seed"], ("audio",), ancestral=False)
    mp4, _ = save_output(output, tmp_path / "v2a.mp4")
    assert_playable(mp4, 17, output.frame_rate)
    assert np.abs(output.audio.waveform.numpy()).max() > 0


def test_retake_regenerates_the_span_with_euler_as_the_reference(
    t2av: TI2VidTwoStagesPipeline, tmp_path: Path
) -> None:
    # The reference's RetakePipeline (distilled) steps with plain Euler on every generation, LTX-2.5 included.
    pipe = RetakePipeline.from_pipe(t2av)
    clip = write_video(tmp_path / "clip.mp4", num_frames=17)
    passes, handle = record_passes(pipe)
    try:
        output = pipe(video=clip, prompt=PROMPT, start_time=0.2, end_time=0.5, seed=SMALL["seed"])
    finally:
        handle.remove()
    assert output.recipe["model_version"] == "2.5" and output.recipe["stage_1_sampler"] == "euler"
    assert_stage_1_sampler(passes, SMALL["seed"], ("video", "audio"), ancestral=False)
    mp4, _ = save_output(output, tmp_path / "retake.mp4")
    assert_playable(mp4, 17, output.frame_rate)


def test_long_form_text_to_av_chains_windows_on_2_5(t2av: TI2VidTwoStagesPipeline, tmp_path: Path) -> None:
    pipe = LongFormPipeline.from_pipe(t2av)
    output = tmp_path / "long.mp4"
    passes, handle = record_passes(pipe)
    try:
        events = list(
            pipe.stream(
                **SMALL, output=output, duration_s=1.2, frame_rate=25.0, window_frames=17, overlap_latent_frames=1
            )
        )
    finally:
        handle.remove()
    recipe = events[-1].recipe
    assert recipe["model_version"] == "2.5" and recipe["stage_1_sampler"] == "euler_ancestral"
    # The first window's stage 1 is a text-to-AV stage 1: ancestral from the run's seed + 10000.
    assert_stage_1_sampler(passes[:STAGE_1_STEPS], SMALL["seed"], ("video", "audio"), ancestral=True)
    assert_playable(output, 30, 25.0)


def test_long_form_audio_to_video_steps_with_euler_on_2_5(t2av: TI2VidTwoStagesPipeline, tmp_path: Path) -> None:
    pipe = LongFormPipeline.from_pipe(t2av)
    clip = tmp_path / "clip.wav"
    write_clip(clip, seconds=1.2)
    passes, handle = record_passes(pipe)
    try:
        events = list(
            pipe.stream(
                **SMALL,
                output=tmp_path / "long.mp4",
                audio=clip,
                frame_rate=25.0,
                window_frames=17,
                overlap_latent_frames=1,
            )
        )
    finally:
        handle.remove()
    assert events[-1].recipe["stage_1_sampler"] == "euler"
    assert_stage_1_sampler(passes[:STAGE_1_STEPS], SMALL["seed"], ("video",), ancestral=False)


def test_diffusion_decoder_decodes_the_final_video_where_its_file_is_there(
    folder: Path, t2av: TI2VidTwoStagesPipeline, tmp_path: Path
) -> None:
    with_decoder = shutil.copytree(folder, tmp_path / "LTX-2.5")
    decoder = tiny.build_tiny_diffusion_decoder()
    official_layout_2_5.write_diffusion_vae(
        with_decoder / official_layout_2_5.FILES["video_vae_diffusion"], decoder, t2av.vae
    )
    pipe = TI2VidTwoStagesPipeline.from_model(str(with_decoder), torch_dtype=torch.float32)
    assert pipe.video_decoder_name == "diffusion" and t2av.video_decoder_name == "conv"
    events = list(pipe.stream(**SMALL, num_frames=9))
    conv_events = list(t2av.stream(**SMALL, num_frames=9))
    output, conv_output = events[-1].output, conv_events[-1].output
    assert output.recipe["video_decoder"] == "diffusion" and conv_output.recipe["video_decoder"] == "conv"
    assert output.frames.shape == conv_output.frames.shape == (9, 64, 64, 3)
    # Same weights and seed: the same latents, decoded by the VAE between the stages in both runs, and by the
    # diffusion decoder at the end in one of them.
    stage_decoded = [event for event in events if isinstance(event, StageDecoded)][0]
    conv_stage_decoded = [event for event in conv_events if isinstance(event, StageDecoded)][0]
    assert np.array_equal(stage_decoded.frames, conv_stage_decoded.frames)
    assert not np.array_equal(output.frames, conv_output.frames)
    torch.testing.assert_close(output.audio.waveform, conv_output.audio.waveform)


def test_image_to_video_recompresses_the_still_at_2_5s_crf(t2av: TI2VidTwoStagesPipeline) -> None:
    # A textured still, so that H.264 at CRF 18 and at 33 give different pixels.
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels)
    passes, handle = record_passes(t2av)
    try:
        t2av(**SMALL, num_frames=9, images=[ImageCondition(image, frame_index=0, strength=1.0)])
    finally:
        handle.remove()
    first_frame_tokens = (64 // 2 // 32) ** 2  # stage 1 runs at half size
    held = passes[0]["video"][:, :first_frame_tokens]

    def encoded(crf: int) -> torch.Tensor:
        with torch.no_grad():
            still = prepare_image(image, 32, 32, crf)
            return t2av.pack_video(t2av.vae.encode(still).latent_dist.mode())

    torch.testing.assert_close(held, encoded(versions.IMAGE_CONDITIONING_CRF_2_5))
    assert not torch.allclose(held, encoded(33), atol=1e-4)


def tiny_pipeline_with_optional_parts() -> TI2VidTwoStagesPipeline:
    pipe = TI2VidTwoStagesPipeline(**tiny.build_tiny_components("2.5"))
    pipe.set_progress_bar_config(disable=True)
    pipe.duration_head, pipe.diffusion_decoder = tiny.build_tiny_duration_head(), tiny.build_tiny_diffusion_decoder()
    return pipe


@pytest.mark.parametrize("memory_mode", ["24gb", "16gb"])
def test_streaming_modes_place_the_diffusion_decoder_and_duration_head_like_the_vae(memory_mode: str) -> None:
    pipe = tiny_pipeline_with_optional_parts()
    place_pipeline(pipe, "cpu", memory_mode, SpeedOptions())
    for module in (pipe.vae, pipe.diffusion_decoder, pipe.duration_head):
        assert _is_group_offload_enabled(module)  # streamed layer by layer, not moved whole on first use
        assert {parameter.dtype for parameter in module.parameters()} == {torch.bfloat16}
    assert pipe.vae.use_tiling and pipe.diffusion_decoder.use_tiling
    prediction = pipe.predict_length(PROMPT, 24.0)
    assert prediction.num_frames % 8 == 1
    output = pipe(**SMALL, num_frames=9)
    assert output.recipe["video_decoder"] == "diffusion"
    assert output.frames.shape == (9, 64, 64, 3)


def test_resident_modes_cast_the_diffusion_decoder_and_duration_head_to_bf16() -> None:
    pipe = tiny_pipeline_with_optional_parts()
    place_pipeline(pipe, "cpu", "full-gpu-bf16", SpeedOptions())
    for module in (pipe.diffusion_decoder, pipe.duration_head):
        assert not _is_group_offload_enabled(module)
        assert {parameter.dtype for parameter in module.parameters()} == {torch.bfloat16}
