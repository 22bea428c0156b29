"""Parity of LTX-2.5 with the reference implementation (Lightricks/LTX-2 1.2.0 source), not with the project itself.

`tools/parity_2_5/record_transformer.py` wrote a seeded tiny LTX-2.5 transformer file in the official per-component
layout, loaded it with the reference's own builder and recorded, in float32, its velocities, its clean estimates and
one distilled stage-1 step (ancestral Euler, LTX-2.5's sampler) and one plain Euler step from recorded noise, for
text-to-AV and for audio-to-video (the audio frozen). Here the project's loader reads the same file into diffusers'
transformer, given LTX-2.5's cross-modal conditioning as the pipelines give it (`engine.cross_modulation`), and must
reproduce them: relative L2 error at most `TOLERANCE`.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ltx_pipeline import TI2VidTwoStagesPipeline, tiny
from ltx_pipeline.engine import DenoiseStep, StreamSpec, denoise, frozen_stream
from ltx_pipeline.engine.cross_modulation import follows_reference_1_2, use_reference_1_2_modulation
from ltx_pipeline.engine.latents import LatentGeometry
from ltx_pipeline.engine.prompt import TextConditioning
from ltx_pipeline.loading_2_5 import load_transformer_file
from ltx_pipeline.sampling_2_5 import euler_ancestral_step
from ltx_pipeline.speed.acceleration import SpeedOptions, apply_speed_options

FIXTURES = Path(__file__).parent / "fixtures" / "parity_2_5"
TOLERANCE = 1e-5


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def run() -> dict:
    inputs = load_file(str(FIXTURES / "inputs.safetensors"))
    reference = load_file(str(FIXTURES / "reference_outputs.safetensors"))
    transformer = load_transformer_file(FIXTURES / "tiny_ltx_2_5_transformer.safetensors")
    use_reference_1_2_modulation(transformer)  # what every pipeline does to an LTX-2.5 transformer
    return {"inputs": inputs, "reference": reference, "transformer": transformer}


def velocities(run: dict, case: str = "plain") -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's velocities for a recorded case: "plain"; "keyframes" (the keyframe embedding on the first
    latent frame); "frozen_audio" (the audio's tokens clean, timesteps 0, at the step's modality sigma); "a2v" (the
    audio frozen as reference 1.2.0's pipelines freeze it: timesteps and modality sigma 0)."""
    inputs, transformer = run["inputs"], run["transformer"]
    sigma = inputs["sigmas"][0].item()
    audio_level = 0.0 if case in ("frozen_audio", "a2v") else sigma
    audio_sigma = 0.0 if case == "a2v" else sigma
    scale = transformer.config.timestep_scale_multiplier
    video, audio = inputs["video.latent"], inputs["audio.latent"]
    with torch.no_grad():
        return transformer(
            hidden_states=video,
            audio_hidden_states=audio,
            encoder_hidden_states=inputs["video.context"],
            audio_encoder_hidden_states=inputs["audio.context"],
            timestep=torch.full(video.shape[:2], sigma * scale),
            audio_timestep=torch.full(audio.shape[:2], audio_level * scale),
            sigma=torch.tensor([sigma * scale]),
            audio_sigma=torch.tensor([audio_sigma * scale]),
            video_coords=inputs["video.coords"],
            audio_coords=inputs["audio.coords"],
            use_cross_timestep=True,  # the gate from the other stream's sigma, as the engine calls it
            video_keyframes_mask=inputs["video.keyframes_mask"] if case == "keyframes" else None,
            return_dict=False,
        )


# Clean audio tokens are where reference 1.2.0 parts from diffusers' own forward: each stream's audio-video
# cross-attention scale/shift from its own per-token timesteps (the gate from the other stream's sigma), and in
# audio-to-video the frozen audio at modality sigma 0. `cross_modulation` makes both.
@pytest.mark.parametrize("case", ["plain", "keyframes", "frozen_audio", "a2v"])
def test_transformer_forward_matches_the_reference(run: dict, case: str) -> None:
    video, audio = velocities(run, case)
    suffix = "" if case == "plain" else f".{case}"
    assert relative_error(video, run["reference"][f"video.velocity{suffix}"]) <= TOLERANCE
    assert relative_error(audio, run["reference"][f"audio.velocity{suffix}"]) <= TOLERANCE


@pytest.mark.parametrize(("case", "other"), [("keyframes", ""), ("frozen_audio", ""), ("a2v", ".frozen_audio")])
def test_each_recorded_case_differs_from_the_one_before(run: dict, case: str, other: str) -> None:
    # Otherwise matching it would prove nothing: the keyframe embedding is non-zero, the clean audio changes the
    # video, and so does the frozen audio's modality sigma.
    before, after = run["reference"][f"video.velocity{other}"], run["reference"][f"video.velocity.{case}"]
    assert relative_error(after, before) > 100 * TOLERANCE


def test_diffusers_own_cross_timesteps_miss_the_held_audio_case(run: dict) -> None:
    # What `cross_modulation` changes: diffusers' forward alone (reference 1.0.0's convention, kept for LTX-2.3)
    # takes each stream's cross-attention scale/shift from the other stream's sigma, so the clean audio's reads the
    # video's sigma instead of its own timesteps 0.
    plain_transformer = load_transformer_file(FIXTURES / "tiny_ltx_2_5_transformer.safetensors")
    video, _ = velocities({**run, "transformer": plain_transformer}, "frozen_audio")
    assert relative_error(video, run["reference"]["video.velocity.frozen_audio"]) > 100 * TOLERANCE


@pytest.mark.parametrize("sampler", ["ancestral", "euler"])
def test_one_distilled_step_matches_the_reference(run: dict, sampler: str) -> None:
    inputs, reference = run["inputs"], run["reference"]
    sigma, sigma_next = inputs["sigmas"].tolist()
    for stream, velocity in zip(("video", "audio"), velocities(run), strict=True):
        latent = inputs[f"{stream}.latent"]
        x0 = latent - sigma * velocity
        assert relative_error(x0, reference[f"{stream}.x0"]) <= TOLERANCE
        eta = 1.0 if sampler == "ancestral" else 0.0
        step = euler_ancestral_step(latent, x0, sigma, sigma_next, inputs[f"{stream}.noise"], eta=eta)
        assert relative_error(step, reference[f"{stream}.{sampler}_step"]) <= TOLERANCE


def engine_step(run: dict, sampler: str, mode: str) -> DenoiseStep:
    """One step of `engine.denoise` on the recorded inputs: text-to-AV, or audio-to-video with the audio frozen."""
    inputs = run["inputs"]
    text = TextConditioning(
        video=inputs["video.context"], audio=inputs["audio.context"], mask=torch.ones(1, 16), all_real=True
    )
    draws = iter([inputs["video.noise"], inputs["audio.noise"]])
    noise = (lambda shape: next(draws)) if sampler == "ancestral" else None
    geometry = LatentGeometry(frames=2, height=2, width=2, audio_frames=6, frame_rate=24.0)  # the recorded grid
    audio = frozen_stream(inputs["audio.latent"]) if mode == "a2v" else StreamSpec()
    with torch.no_grad():
        return next(
            denoise(
                run["transformer"],
                StreamSpec(positions=inputs["video.coords"]),
                audio,
                inputs["video.latent"],
                inputs["audio.latent"],
                inputs["sigmas"].tolist(),
                geometry,
                text,
                None,
                lambda: False,
                ancestral_noise=noise,
            )
        )


@pytest.mark.parametrize("mode", ["t2av", "a2v"])
@pytest.mark.parametrize("sampler", ["ancestral", "euler"])
def test_the_engines_denoising_step_matches_the_reference(run: dict, sampler: str, mode: str) -> None:
    # The project's own loop (`engine.denoise`, what every mode runs), not the step function alone: its transformer
    # call, clean estimate and, on LTX-2.5's distilled stage 1, its ancestral step fed the reference's recorded noise
    # in the order the loop draws it (video, then audio). In audio-to-video the audio is a frozen stream, as the A2V
    # pipeline declares it: never stepped, and at modality sigma 0 in the transformer call.
    inputs, reference = run["inputs"], run["reference"]
    step = engine_step(run, sampler, mode)
    suffix = ".a2v" if mode == "a2v" else ""
    assert relative_error(step.video_estimate, reference[f"video.x0{suffix}"]) <= TOLERANCE
    assert relative_error(step.video_latents, reference[f"video.{sampler}_step{suffix}"]) <= TOLERANCE
    if mode == "a2v":  # the reference pulls a frozen stream back to its clean latents after every step
        assert torch.equal(step.audio_latents, inputs["audio.latent"])
    else:
        assert relative_error(step.audio_latents, reference[f"audio.{sampler}_step"]) <= TOLERANCE
    other = "euler" if sampler == "ancestral" else "ancestral"
    assert relative_error(step.video_latents, reference[f"video.{other}_step{suffix}"]) > 100 * TOLERANCE


def test_the_pipelines_give_only_ltx_2_5_reference_1_2s_conditioning(tiny_components: dict) -> None:
    # LTX-2.3 keeps reference 1.0.0's conventions (its parity suite, tests/test_parity.py, measures them).
    assert follows_reference_1_2(TI2VidTwoStagesPipeline(**tiny.build_tiny_components("2.5")).transformer)
    assert not follows_reference_1_2(TI2VidTwoStagesPipeline(**tiny_components).transformer)


@pytest.mark.slow  # compiles the tiny transformer's blocks on the CPU, about a minute
def test_compiled_blocks_with_fused_processors_keep_the_parity(run: dict) -> None:
    # The speed options swap the rotary processors and compile the blocks with the fused-norms pass; 1.2.0's
    # conditioning is made outside the blocks, so the compiled transformer must match the reference as eager does.
    torch._dynamo.reset()
    transformer = load_transformer_file(FIXTURES / "tiny_ltx_2_5_transformer.safetensors")
    use_reference_1_2_modulation(transformer)
    apply_speed_options(transformer, SpeedOptions(compile=True, fused_rotary=True, fused_norms=True))
    compiled = {**run, "transformer": transformer}
    with torch._inductor.config.patch(fx_graph_cache=False):  # a cached graph would not run the fused-norms pass
        video, audio = velocities(compiled, "a2v")
        step = engine_step(compiled, "ancestral", "a2v")
    assert relative_error(video, run["reference"]["video.velocity.a2v"]) <= TOLERANCE
    assert relative_error(audio, run["reference"]["audio.velocity.a2v"]) <= TOLERANCE
    assert relative_error(step.video_latents, run["reference"]["video.ancestral_step.a2v"]) <= TOLERANCE
