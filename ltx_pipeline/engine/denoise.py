"""The denoising loop over both streams, and the one transformer call that it and the benchmarks make.

The loop is written out (not diffusers' `LTX2Pipeline` loop) because it must stream estimates, hold any token
clean, and guide each stream on its own. It follows the reference's `euler_denoising_loop` with
`multi_modal_guider_denoising_func` (ltx_pipelines/utils/samplers.py, helpers.py).
"""

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .. import constants
from ..guiders import MultiModalGuider
from ..perturbations import perturb_only
from ..positions import token_positions
from ..sampling_2_5 import euler_ancestral_step
from .cross_modulation import follows_reference_1_2
from .latents import LatentGeometry
from .prompt import TextConditioning
from .streams import StreamSpec


@dataclass(frozen=True)
class DenoiseStep:
    """The state after one denoising step."""

    step: int  # 1-based
    total_steps: int
    video_latents: torch.Tensor  # packed, normalised (B, S_video, C)
    audio_latents: torch.Tensor  # packed, normalised (B, S_audio, C)
    video_estimate: torch.Tensor  # guided clean estimate, packed, normalised
    audio_estimate: torch.Tensor


def transformer_velocity(
    transformer: torch.nn.Module,
    video: torch.Tensor,
    audio: torch.Tensor,
    text: TextConditioning,
    sigma: float,
    geometry: LatentGeometry,
    video_timesteps: torch.Tensor | float | None = None,
    audio_timesteps: torch.Tensor | float | None = None,
    isolate_modalities: bool = False,
    stg_blocks: tuple[int, ...] | None = None,
    graph_state: tuple = (),
    video_positions: torch.Tensor | None = None,
    modality_sigmas: tuple[float, float] | None = None,
    audio_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One transformer pass at the step's `sigma` (on the [0, 1] scale); returns float32 (video, audio) velocities.

    As in the reference (`modality_from_latent_state`), each stream's modality sigma is the step's sigma, or the
    (video, audio) `modality_sigmas` where given (reference 1.2.0 gives a frozen stream 0): it drives the stream's
    prompt AdaLN and the other stream's cross-modal AdaLN. Each token's timestep is its own noise level,
    `*_timesteps`: (1, S) per token, a number for all tokens, None for the step's sigma; 0 where a token is held
    clean. `video_positions` (1, 3, S, 2) are the video tokens' positions (the grid's own where None; `denoise` passes
    them, made once per stage, with appended keyframe tokens' where there are any), `audio_positions` (1, 1, A, 2) the
    audio tokens'. Where a speed option installed a runner of the forward on the transformer (the whole-forward CUDA graphs
    of `SpeedOptions.forward_graph`), the pass goes through it with `graph_state`, what its `loop_state` returned.
    """
    batch = video.shape[0]
    dtype = transformer.dtype
    scale = transformer.config.timestep_scale_multiplier

    def timesteps(level: torch.Tensor | float | None, tokens: int | None = None) -> torch.Tensor:
        if torch.is_tensor(level):
            return (level * scale).to(torch.float32).expand(batch, -1)
        value = sigma if level is None else level
        shape = (batch,) if tokens is None else (batch, tokens)
        return torch.full(shape, value * scale, device=video.device, dtype=torch.float32)

    video_sigma, audio_sigma = (None, None) if modality_sigmas is None else modality_sigmas
    # Each pass is a new step for CUDA graphs recorded by torch.compile (SpeedOptions.cuda_graphs): the last
    # pass's graph outputs may be overwritten. Without such graphs this only advances a counter.
    torch.compiler.cudagraph_mark_step_begin()
    kwargs = dict(
        hidden_states=video.to(dtype),
        audio_hidden_states=audio.to(dtype),
        encoder_hidden_states=text.video.to(dtype),
        audio_encoder_hidden_states=text.audio.to(dtype),
        timestep=timesteps(video_timesteps),
        # Per token even where all are equal: the same shapes whether the audio is generated or held clean, so
        # compiled blocks and recorded graphs serve text to audio+video and audio to video alike (a few hundred
        # audio tokens; the video's thousands keep one timestep where they can).
        audio_timestep=timesteps(audio_timesteps, tokens=audio.shape[1]),
        sigma=timesteps(video_sigma),
        audio_sigma=timesteps(audio_sigma),
        encoder_attention_mask=text.transformer_mask,
        audio_encoder_attention_mask=text.transformer_mask,
        num_frames=geometry.frames,
        height=geometry.height,
        width=geometry.width,
        fps=geometry.frame_rate,
        audio_num_frames=audio.shape[1],
        isolate_modalities=isolate_modalities,
        spatio_temporal_guidance_blocks=list(stg_blocks) if stg_blocks else None,
        use_cross_timestep=bool(transformer.config.cross_attn_mod),
        return_dict=False,
    )
    if video_positions is not None:
        kwargs["video_coords"] = video_positions.expand(batch, -1, -1, -1)
    if audio_positions is not None:
        kwargs["audio_coords"] = audio_positions.expand(batch, -1, -1, -1)
    runner = forward_runner(transformer)
    video_velocity, audio_velocity = (
        transformer(**kwargs) if runner is None else runner(transformer, graph_state, kwargs)
    )
    return video_velocity.float(), audio_velocity.float()


def forward_runner(transformer: torch.nn.Module) -> Any:
    """The runner of the forward a speed option installed on `transformer`, or None (see constants)."""
    return getattr(transformer, constants.FORWARD_RUNNER_ATTRIBUTE, None)


def euler_step(latents: torch.Tensor, estimate: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One Euler step of flow matching toward the clean `estimate` (the reference's `EulerDiffusionStep`).

    `sigma_next` may be any level below `sigma`, 0 or not, so a schedule need not end at 0.
    """
    # The step in float32, as the reference subtracts its float32 sigmas, filled in on the latents' device: a tensor
    # moved there from the host would be a copy that waits for all queued work at every step.
    levels = torch.tensor([sigma, sigma_next], dtype=torch.float32)
    step = torch.full((), (levels[1] - levels[0]).item(), dtype=torch.float32, device=latents.device)
    return latents + step * ((latents - estimate) / sigma)


def _token_levels(spec: StreamSpec, sigma: float) -> torch.Tensor | float:
    """Each token's noise level: `mask * sigma`, or the step's sigma where every token is generated."""
    return sigma if spec.denoise_mask is None else sigma * spec.denoise_mask[..., 0]


def _modality_sigma(spec: StreamSpec, sigma: float, reference_1_2: bool) -> float:
    """A stream's modality sigma: the step's, or 0 for a frozen stream under reference 1.2.0's conventions (its
    `modality_from_latent_state`; 1.0.0 kept the step's, see `cross_modulation`)."""
    return 0.0 if reference_1_2 and spec.frozen else sigma


def _held_back(estimate: torch.Tensor, spec: StreamSpec) -> torch.Tensor:
    """Pulls held tokens' clean estimate back to the stream's clean latents (the reference's `post_process_latent`)."""
    if spec.denoise_mask is None:
        return estimate
    return estimate * spec.denoise_mask + spec.clean * (1 - spec.denoise_mask)


def denoise(
    transformer: torch.nn.Module,
    video: StreamSpec,
    audio: StreamSpec,
    video_latents: torch.Tensor,
    audio_latents: torch.Tensor,
    sigmas: list[float],
    geometry: LatentGeometry,
    positive: TextConditioning,
    negative: TextConditioning | None,
    interrupted: Callable[[], bool],
    ancestral_noise: Callable[[tuple[int, ...]], torch.Tensor] | None = None,
) -> Iterator[DenoiseStep]:
    """Euler denoising of both streams from one noise state; yields after every step, ends when `interrupted()`.

    A frozen stream is conditioning only: its tokens' timesteps are 0 (and its modality sigma, on a transformer that
    follows reference 1.2.0: `cross_modulation`), it is never stepped (so it stays bit-identical) and its guidance is
    not run. Partly held streams (images, kept time spans) are pulled back to their clean latents by `1 - mask` after
    every step. With `ancestral_noise` (a draw of standard normal noise of a shape) every step is LTX-2.5's ancestral
    Euler step instead (`sampling_2_5`), drawing video noise, then audio, for each generated stream (reference
    `_ancestral_euler_denoising_loop`).
    """
    streams = [spec for spec in (video, audio) if not spec.frozen]
    guiders = {id(spec): MultiModalGuider(spec.guidance) for spec in (video, audio)}
    active = [guiders[id(spec)] for spec in streams]
    needs_unconditional = any(guider.needs_unconditional for guider in active)
    needs_perturbed = any(guider.needs_perturbed for guider in active)
    needs_isolated = any(guider.needs_isolated for guider in active)
    stg_blocks = next((guider.params.stg_blocks for guider in active if guider.params.stg_blocks), ())
    if needs_unconditional and negative is None:
        raise ValueError("CFG needs a negative prompt encoding; got none.")
    # What the recorded forwards depend on besides their inputs: fixed during the loop, and milliseconds to find.
    runner = forward_runner(transformer)
    graph_state = runner.loop_state(transformer) if runner is not None else ()
    if needs_unconditional:
        # One batched pass for the conditional and unconditional estimates. As in the reference
        # (`multi_modal_guider_denoising_func`), a stream without CFG keeps its positive prompt in the unconditional
        # pass: A2V's held audio sees its prompt there while the video sees the negative one.
        video_cfg, audio_cfg = (not spec.frozen and guiders[id(spec)].needs_unconditional for spec in (video, audio))
        text_batch = TextConditioning(
            video=torch.cat([positive.video, negative.video if video_cfg else positive.video]),
            audio=torch.cat([positive.audio, negative.audio if audio_cfg else positive.audio]),
            mask=torch.cat([positive.mask, negative.mask]),
            all_real=positive.all_real and negative.all_real,
        )
    # As in the reference, STG skips the self-attention of the streams whose guider does STG only.
    perturbed_streams = {
        name
        for name, spec in (("video", video), ("audio", audio))
        if not spec.frozen and guiders[id(spec)].needs_perturbed
    }
    total_steps = len(sigmas) - 1
    reference_1_2 = follows_reference_1_2(transformer)
    video_positions, audio_positions = _rotary_coordinates(transformer, video, geometry, audio_latents)

    for index in range(total_steps):
        if interrupted():
            return
        sigma = sigmas[index]
        video_levels, audio_levels = _token_levels(video, sigma), _token_levels(audio, sigma)
        modality_sigmas = (_modality_sigma(video, sigma, reference_1_2), _modality_sigma(audio, sigma, reference_1_2))
        velocity = functools.partial(
            transformer_velocity,
            transformer,
            sigma=sigma,
            geometry=geometry,
            video_timesteps=video_levels,
            audio_timesteps=audio_levels,
            graph_state=graph_state,
            video_positions=video_positions,
            audio_positions=audio_positions,
            modality_sigmas=modality_sigmas,
        )
        current = (video_latents, audio_latents)
        levels = (_as_column(video_levels), _as_column(audio_levels))

        estimates: dict[str, Any] = {"perturbed": (None, None), "isolated": (None, None)}
        if needs_unconditional:
            both = velocity(video_latents.repeat(2, 1, 1), audio_latents.repeat(2, 1, 1), text_batch)
            estimates["cond"] = _to_x0(current, (both[0][:1], both[1][:1]), levels)
            estimates["uncond"] = _to_x0(current, (both[0][1:], both[1][1:]), levels)
        else:
            estimates["cond"] = _to_x0(current, velocity(video_latents, audio_latents, positive), levels)
            estimates["uncond"] = (None, None)
        if needs_perturbed:
            with perturb_only(transformer, stg_blocks, perturbed_streams):
                perturbed = velocity(video_latents, audio_latents, positive, stg_blocks=stg_blocks)
            estimates["perturbed"] = _to_x0(current, perturbed, levels)
        if needs_isolated:
            estimates["isolated"] = _to_x0(
                current, velocity(video_latents, audio_latents, positive, isolate_modalities=True), levels
            )

        new_latents, guided = [], []
        for position, spec in enumerate((video, audio)):
            latents = current[position]
            if spec.frozen:
                new_latents.append(latents)
                guided.append(latents)
                continue
            parts = [estimates[name][position] for name in ("cond", "uncond", "perturbed", "isolated")]
            estimate = _held_back(guiders[id(spec)].guide(*parts), spec)
            guided.append(estimate)
            if ancestral_noise is None:
                new_latents.append(euler_step(latents, estimate, sigma, sigmas[index + 1]))
            else:
                new_latents.append(_ancestral_step(latents, estimate, sigma, sigmas[index + 1], spec, ancestral_noise))
        video_latents, audio_latents = new_latents
        yield DenoiseStep(
            step=index + 1,
            total_steps=total_steps,
            video_latents=video_latents,
            audio_latents=audio_latents,
            video_estimate=guided[0],
            audio_estimate=guided[1],
        )


def _ancestral_step(
    latents: torch.Tensor,
    estimate: torch.Tensor,
    sigma: float,
    sigma_next: float,
    spec: StreamSpec,
    noise: Callable[[tuple[int, ...]], torch.Tensor],
) -> torch.Tensor:
    """One ancestral Euler step; held tokens are pulled back to their clean latents after the noise is added (the
    reference's `post_process_latent` after the step). The last step (sigma_next 0) draws nothing."""
    if sigma_next == 0:
        return estimate
    drawn = noise(tuple(latents.shape)).to(latents.device)
    return _held_back(euler_ancestral_step(latents, estimate, sigma, sigma_next, drawn), spec)


def _rotary_coordinates(
    transformer: torch.nn.Module, video: StreamSpec, geometry: LatentGeometry, audio_latents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stage's video and audio token positions (batch 1), made once for all its passes (`token_positions`); the
    video stream's own where it has appended keyframe tokens."""
    grid, audio_positions = token_positions(
        transformer, 1, geometry.frames, geometry.height, geometry.width, geometry.frame_rate,
        audio_latents.shape[1], audio_latents.device,
    )  # fmt: skip
    return (grid if video.positions is None else video.positions), audio_positions


def _as_column(levels: torch.Tensor | float) -> torch.Tensor | float:
    """Per-token levels (1, S) -> (1, S, 1), to scale packed (1, S, C) latents."""
    return levels.unsqueeze(-1) if torch.is_tensor(levels) else levels


def _to_x0(
    latents: tuple[torch.Tensor, torch.Tensor],
    velocities: tuple[torch.Tensor, torch.Tensor],
    levels: tuple[torch.Tensor | float, torch.Tensor | float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean estimates of (video, audio). Flow matching: x_t = (1 - sigma) x0 + sigma * noise, velocity = noise - x0."""
    return tuple(x - level * velocity for x, velocity, level in zip(latents, velocities, levels, strict=True))
