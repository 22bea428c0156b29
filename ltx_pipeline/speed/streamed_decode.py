"""The video VAE's decoder run over time in chunks, giving the frames of the whole decode a chunk at a time.

Why: a pipeline's last step decodes the whole clip and only then hands the frames to the mp4 encoder, which waits
for the decode and the decode for nothing. Decoded chunk by chunk, the first frames reach the encoder (another
thread) after a fraction of the decode, and the file is finished about when the decode is.

How, exactly: LTX-2's decoder is a chain of temporal convolutions (kernel 3 in time, the clip's edge frames
replicated as padding) around per-position operations (RMS norms over channels, SiLU, global timestep modulation)
and depth-to-space upsamplers. Each convolution here keeps the last input frames it saw and computes only the
output frames whose inputs have all arrived, so a frame's result is computed once, from the same inputs, as in the
whole decode; a residual branch waits in a queue for its convolutions. Nothing is recomputed at chunk borders
(an overlapping-tiles decode would recompute a border of 14 latent frames a side for the 2.3 decoder, about its
whole reach). Chunks are pushed depth first with a bounded number of frames at every layer, so the first output
frames come out after the early, cheap layers have run over the clip and the late, costly ones over one chunk.

Decoders with noise injection or with a temporal patch size above 1 are not streamed (`can_stream` says so); the
caller decodes them whole.
"""

from collections.abc import Callable, Iterator

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import (
    LTX2VideoCausalConv3d,
    LTX2VideoDecoder3d,
    LTX2VideoResnetBlock3d,
    LTX2VideoUpsampler3d,
)
from torch import nn

Stage = Callable[[torch.Tensor, bool], torch.Tensor]  # (frames in, last call) -> frames out, (B, C, T, H, W)


class StreamedConv:
    """An `LTX2VideoCausalConv3d` fed frames in order: returns each output frame once all its inputs arrived."""

    def __init__(self, conv: LTX2VideoCausalConv3d, causal: bool) -> None:
        self.conv = conv.conv  # padded in space only; time is padded here, as LTX2VideoCausalConv3d pads it
        kernel = conv.kernel_size[0]
        self.context = kernel - 1
        self.pad_left = kernel - 1 if causal else (kernel - 1) // 2
        self.pad_right = 0 if causal else (kernel - 1) // 2
        self.kept: torch.Tensor | None = None  # the last `context` frames seen (padding included)

    def __call__(self, frames: torch.Tensor, last: bool) -> torch.Tensor:
        if self.kept is None and frames.shape[2] == 0:  # nothing has arrived yet
            return frames.new_empty(frames.shape[0], self.conv.out_channels, 0, *frames.shape[3:])
        parts = []
        if self.kept is None:
            parts.append(frames[:, :, :1].expand(-1, -1, self.pad_left, -1, -1))
        else:
            parts.append(self.kept)
        parts.append(frames)
        window = torch.cat(parts, dim=2)
        if last and self.pad_right:
            window = torch.cat([window, window[:, :, -1:].expand(-1, -1, self.pad_right, -1, -1)], dim=2)
        self.kept = window[:, :, window.shape[2] - self.context :]
        if window.shape[2] <= self.context:  # not one output frame has all its inputs yet
            return window.new_empty(window.shape[0], self.conv.out_channels, 0, *window.shape[3:])
        return self.conv(window)


class _Delay:
    """Frames queued until as many output frames of a delayed branch exist (aligns a residual with its convs)."""

    def __init__(self) -> None:
        self.queued: torch.Tensor | None = None

    def pop(self, frames: torch.Tensor | None, count: int) -> torch.Tensor:
        if frames is not None:
            self.queued = frames if self.queued is None else torch.cat([self.queued, frames], dim=2)
        ready, self.queued = self.queued[:, :, :count], self.queued[:, :, count:]
        return ready


def _resnet_stage(resnet: LTX2VideoResnetBlock3d, temb: torch.Tensor | None, causal: bool) -> Stage:
    """diffusers' `LTX2VideoResnetBlock3d.forward` with its two convolutions streamed (no noise injection)."""
    conv1, conv2, delay = StreamedConv(resnet.conv1, causal), StreamedConv(resnet.conv2, causal), _Delay()
    modulation = None
    if resnet.scale_shift_table is not None:
        modulation = (temb.unflatten(1, (4, -1)) + resnet.scale_shift_table[None, ..., None, None, None]).unbind(1)

    def run(frames: torch.Tensor, last: bool) -> torch.Tensor:
        hidden = resnet.norm1(frames)
        if modulation is not None:
            hidden = hidden * (1 + modulation[1]) + modulation[0]
        hidden = conv1(resnet.nonlinearity(hidden), last)
        hidden = resnet.norm2(hidden)
        if modulation is not None:
            hidden = hidden * (1 + modulation[3]) + modulation[2]
        hidden = conv2(resnet.dropout(resnet.nonlinearity(hidden)), last)
        shortcut = frames
        if frames.shape[2] and resnet.norm3 is not None:
            shortcut = resnet.norm3(shortcut.movedim(1, -1)).movedim(-1, 1)
        if frames.shape[2] and resnet.conv_shortcut is not None:
            shortcut = resnet.conv_shortcut(shortcut)
        return hidden + delay.pop(shortcut if frames.shape[2] else None, hidden.shape[2])

    return run


def _depth_to_space(hidden: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    # (B, C * st * sh * sw, T, H, W) -> (B, C, T * st, H * sh, W * sw), as LTX2VideoUpsampler3d rearranges
    batch, _, frames, height, width = hidden.shape
    hidden = hidden.reshape(batch, -1, *stride, frames, height, width)
    return hidden.permute(0, 1, 5, 2, 6, 3, 7, 4).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def _upsampler_stage(upsampler: LTX2VideoUpsampler3d, causal: bool) -> Stage:
    """diffusers' `LTX2VideoUpsampler3d.forward` streamed: the first (stride - 1) frames of the clip are dropped."""
    conv, delay, stride = StreamedConv(upsampler.conv, causal), _Delay(), upsampler.stride
    dropped = [False]

    def drop_first(frames: torch.Tensor) -> torch.Tensor:
        if dropped[0] or frames.shape[2] == 0:
            return frames
        dropped[0] = True
        return frames[:, :, stride[0] - 1 :]

    def run(frames: torch.Tensor, last: bool) -> torch.Tensor:
        hidden = conv(frames, last)
        count = hidden.shape[2]
        if count == 0:
            delay.pop(frames if frames.shape[2] else None, 0)
            return hidden
        hidden = _depth_to_space(hidden, stride)
        if upsampler.residual:
            repeats = (stride[0] * stride[1] * stride[2]) // upsampler.upscale_factor
            queued = delay.pop(frames if frames.shape[2] else None, count)
            residual = _depth_to_space(queued, stride).repeat(1, repeats, 1, 1, 1)
            hidden = hidden + residual
        return drop_first(hidden)

    return run


def _pointwise(function: Callable[[torch.Tensor], torch.Tensor]) -> Stage:
    return lambda frames, last: function(frames) if frames.shape[2] else frames


def can_stream(decoder: nn.Module) -> bool:
    """Whether `decoder` is an LTX-2 video decoder this module streams frame for frame."""
    if not isinstance(decoder, LTX2VideoDecoder3d) or decoder.patch_size_t != 1:
        return False
    return not any(
        getattr(module, "per_channel_scale1", None) is not None
        for module in decoder.modules()
        if isinstance(module, LTX2VideoResnetBlock3d)
    )


def _block_embedding(block: nn.Module, temb: torch.Tensor | None, batch: int, dtype: torch.dtype):
    if getattr(block, "time_embedder", None) is None:
        return temb
    embedded = block.time_embedder(
        timestep=temb.flatten(), resolution=None, aspect_ratio=None, batch_size=batch, hidden_dtype=dtype
    )
    return embedded.view(batch, -1, 1, 1, 1)


def decoder_stages(
    decoder: LTX2VideoDecoder3d, temb: torch.Tensor | None, batch: int, dtype: torch.dtype, causal: bool
) -> list[tuple[Stage, int]]:
    """The decoder as a chain of streamed stages, each with its time rate (its frames per latent frame)."""
    stages: list[tuple[Stage, int]] = [(StreamedConv(decoder.conv_in, causal), 1)]
    if decoder.timestep_scale_multiplier is not None:
        temb = temb * decoder.timestep_scale_multiplier
    rate = 1
    mid_temb = _block_embedding(decoder.mid_block, temb, batch, dtype)
    stages += [(_resnet_stage(resnet, mid_temb, causal), rate) for resnet in decoder.mid_block.resnets]
    for block in decoder.up_blocks:
        if block.conv_in is not None:
            stages.append((_resnet_stage(block.conv_in, temb, causal), rate))
        block_temb = _block_embedding(block, temb, batch, dtype)
        for upsampler in block.upsamplers or []:
            stages.append((_upsampler_stage(upsampler, causal), rate))
            rate *= upsampler.stride[0]
        stages += [(_resnet_stage(resnet, block_temb, causal), rate) for resnet in block.resnets]

    def finish(hidden: torch.Tensor) -> torch.Tensor:
        hidden = decoder.norm_out(hidden)
        if decoder.time_embedder is not None:
            embedded = decoder.time_embedder(
                timestep=temb.flatten(), resolution=None, aspect_ratio=None, batch_size=batch, hidden_dtype=dtype
            )
            embedded = embedded.view(batch, -1, 1, 1, 1).unflatten(1, (2, -1))
            shift, scale = (embedded + decoder.scale_shift_table[None, ..., None, None, None]).unbind(dim=1)
            hidden = hidden * (1 + scale) + shift
        return decoder.conv_act(hidden)

    def unpatchify(hidden: torch.Tensor) -> torch.Tensor:
        # (B, 3 * p * p, T, h, w) -> (B, 3, T, h * p, w * p), as the decoder's forward ends (temporal patch 1)
        p = decoder.patch_size
        batch_size, _, frames, height, width = hidden.shape
        hidden = hidden.reshape(batch_size, -1, 1, p, p, frames, height, width)
        return hidden.permute(0, 1, 5, 2, 6, 4, 7, 3).flatten(6, 7).flatten(4, 5).flatten(2, 3)

    stages += [(_pointwise(finish), rate), (StreamedConv(decoder.conv_out, causal), rate)]
    stages.append((_pointwise(unpatchify), rate))
    return stages


def _push(stages: list[tuple[Stage, int]], index: int, frames: torch.Tensor, last: bool, chunk: int):
    """Runs `frames` through stages[index:], at most `chunk` latent frames' worth at a time, depth first."""
    if index == len(stages):
        if frames.shape[2]:
            yield frames
        return
    stage, rate = stages[index]
    piece = max(1, chunk * rate)
    starts = list(range(0, frames.shape[2], piece)) or [0]
    for number, start in enumerate(starts):
        final = last and number == len(starts) - 1
        output = stage(frames[:, :, start : start + piece], final)
        if output.shape[2] or final:
            yield from _push(stages, index + 1, output, final, chunk)


@torch.no_grad()
def decode_streamed(
    decoder: LTX2VideoDecoder3d,
    latents: torch.Tensor,
    temb: torch.Tensor | None = None,
    causal: bool | None = None,
    chunk_latent_frames: int = 2,
) -> Iterator[torch.Tensor]:
    """Decoder output (B, 3, T, H, W) for `latents` (B, C, F, h, w), in consecutive chunks over T.

    Concatenated, the chunks are the decoder's whole output (`decoder(latents, temb, causal)`): the same operations on
    the same values, in another order. `chunk_latent_frames` bounds the frames each layer takes at once (in latent
    frames: 2 is 16 output frames at LTX-2's 8x); smaller chunks give the first frames sooner, at more launches.
    """
    if not can_stream(decoder):
        raise ValueError(f"{type(decoder).__name__} cannot be streamed (noise injection or a temporal patch size).")
    if chunk_latent_frames < 1:
        raise ValueError(f"`chunk_latent_frames` must be >= 1; got {chunk_latent_frames}.")
    causal = causal or decoder.is_causal
    stages = decoder_stages(decoder, temb, latents.shape[0], latents.dtype, causal)
    yield from _push(stages, 0, latents, True, chunk_latent_frames)
