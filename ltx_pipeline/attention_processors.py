"""An attention processor for the LTX-2 transformer whose split rotary embedding compiles into one pass.

diffusers rotates the queries and keys in place (`apply_split_rotary_emb` in transformer_ltx2.py: `addcmul_` on two
halves of one float32 tensor). Under `torch.compile` that in-place update makes inductor write the rotated queries and
keys to memory in float32 and convert them to bf16 in a second kernel: at 768x512x121, 18 ms of each forward went to
those kernels (benchmarks/RESULTS.md, run 8). Rotated out of place, normalisation, rotation and the bf16 cast fuse
into one pass (run 9: 352 -> 342 ms a forward). The arithmetic is the same float32 arithmetic.
"""

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_ltx2 import (
    LTX2Attention,
    LTX2AudioVideoAttnProcessor,
    LTX2AudioVideoRotaryPosEmbed,
    LTX2PerturbedAttnProcessor,
    apply_interleaved_rotary_emb,
)
from torch import nn

from .fp8_kernels import quantize_gated_heads
from .positions import ReferencePrecisionRotaryPosEmbed
from .rotary_kernels import norm_and_rotate


class OutOfPlaceRotaryAttnProcessor(LTX2PerturbedAttnProcessor):
    """diffusers' `LTX2PerturbedAttnProcessor` with the split rotary embedding computed out of place.

    Adapted from diffusers 0.42.1 (transformer_ltx2.py); the rotation differs, and the optional fp8 output path below.
    Without a perturbation mask it computes what `LTX2AudioVideoAttnProcessor` does, so it stands in for either.

    `fp8_gated_output` (set by `acceleration.fuse_fp8_gated_outputs` where `to_out[0]` is a row-wise `Fp8Linear`):
    the gating of a gated attention's output and the out-projection's fp8 scales in one pass
    (`fp8_kernels.quantize_gated_heads`), reading the attention output once in the backend's layout, where compiled
    it was copied to (B, T, H*D), then read twice more for the scales and the cast. Not with a perturbation mask
    (STG passes), which keeps the unfused path.

    `norm_rotary_kernel` (on by default): the split rotary embedding's queries and keys normalised and rotated in one
    pass of a Triton kernel on CUDA (`rotary_kernels`; the self-attention's queries and keys in one launch), the
    same arithmetic as the PyTorch path, which runs elsewhere and where the kernel does not fit.
    """

    fp8_gated_output: bool = False
    norm_rotary_kernel: bool = True

    def __call__(
        self,
        attn: LTX2Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        perturbation_mask: torch.Tensor | None = None,
        all_perturbed: bool | None = None,
    ) -> torch.Tensor:
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        if attn.to_gate_logits is not None:
            gate_logits = attn.to_gate_logits(hidden_states)  # from the block's input, as diffusers does

        value = attn.to_v(encoder_hidden_states)
        if all_perturbed is None:
            all_perturbed = torch.all(perturbation_mask == 0) if perturbation_mask is not None else False
        if all_perturbed:
            hidden_states = value  # every sample perturbed: the attention is skipped, its values kept
        else:
            query, key = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states)
            if query_rotary_emb is None:
                query, key = attn.norm_q(query), attn.norm_k(key)
            elif attn.rope_type == "split":
                norms = (attn.norm_q, attn.norm_k)
                query, key = norm_and_rotate(
                    query, key, norms, query_rotary_emb, key_rotary_emb, kernel=self.norm_rotary_kernel
                )
            else:
                query = apply_interleaved_rotary_emb(attn.norm_q(query), query_rotary_emb)
                key_rotary_emb = key_rotary_emb if key_rotary_emb is not None else query_rotary_emb
                key = apply_interleaved_rotary_emb(attn.norm_k(key), key_rotary_emb)

            # (B, T, H*D) -> (B, T, H, D)
            query, key, value = (tensor.unflatten(2, (attn.heads, -1)) for tensor in (query, key, value))
            attention = dispatch_attention_fn(
                query,
                key,
                value,
                attn_mask=attention_mask,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )  # (B, T, H, D)
            if self.fp8_gated_output and attn.to_gate_logits is not None and perturbation_mask is None:
                out = attn.to_out[0]
                values, scales = quantize_gated_heads(attention.to(query.dtype), gate_logits)
                output = out.product(values, scales, query.dtype)  # (B*T, out)
                return attn.to_out[1](output.reshape(*attention.shape[:2], -1))  # (B*T, out) -> (B, T, out)
            hidden_states = attention.flatten(2, 3).to(query.dtype)
            if perturbation_mask is not None:
                hidden_states = torch.lerp(value.flatten(2, 3), hidden_states, perturbation_mask)

        if attn.to_gate_logits is not None:
            hidden_states = hidden_states.unflatten(2, (attn.heads, -1))  # (B, T, H*D) -> (B, T, H, D)
            # 2 * sigmoid: zero-initialised gate logits give gates of 1.
            hidden_states = (hidden_states * (2.0 * torch.sigmoid(gate_logits)).unsqueeze(-1)).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


class HalfTableRotaryPosEmbed(ReferencePrecisionRotaryPosEmbed):
    """diffusers' rotary-embedding module whose split cos and sin tables come out in float16 on CUDA (video modules
    also keep the reference's position precision, `positions.ReferencePrecisionRotaryPosEmbed`).

    The norm + rotary kernel (`rotary_kernels`) reads a video token's tables once per attention: in float32 they were
    a third of its traffic. The tables are made once per forward and read by each of the 48 blocks, so one cast per
    forward halves what every block reads of them. float16 rounds a value in [-1, 1] by 2^-12 at most, an eighth of the rounding of the bf16
    values it rotates. Interleaved tables, and tables off CUDA, stay float32.
    """

    def forward(
        self, coords: torch.Tensor, device: str | torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = super().forward(coords, device=device)
        if self.rope_type != "split" or not cos.is_cuda:
            return cos, sin
        return cos.to(torch.float16), sin.to(torch.float16)


def use_out_of_place_rotary(model: nn.Module) -> int:
    """Give every `LTX2Attention` of `model` an `OutOfPlaceRotaryAttnProcessor`, keeping its attention backend and
    parallel configuration, and every rotary-embedding module half-precision tables (`HalfTableRotaryPosEmbed`, the
    same module with its class swapped: it holds no weights). In place; attentions that already have the processor
    are left alone. Returns how many attentions changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, LTX2Attention) and not isinstance(module.processor, OutOfPlaceRotaryAttnProcessor):
            _swap_processor(module, OutOfPlaceRotaryAttnProcessor())
            changed += 1
        elif type(module) in (LTX2AudioVideoRotaryPosEmbed, ReferencePrecisionRotaryPosEmbed):
            module.__class__ = HalfTableRotaryPosEmbed
    return changed


def use_diffusers_rotary(model: nn.Module) -> int:
    """Undo `use_out_of_place_rotary` on a transformer: each attention gets back the processor class its block builds
    (`LTX2PerturbedAttnProcessor` where the block has perturbed attention), same backend. Returns how many changed."""
    changed = 0
    for block in model.transformer_blocks:
        cls = LTX2PerturbedAttnProcessor if block.perturbed_attn else LTX2AudioVideoAttnProcessor
        for module in block.modules():
            if isinstance(module, LTX2Attention) and isinstance(module.processor, OutOfPlaceRotaryAttnProcessor):
                _swap_processor(module, cls())
                changed += 1
    for module in model.modules():
        if type(module) is HalfTableRotaryPosEmbed:
            # Back to the class it had: video modules keep the reference's position precision (`positions`).
            marked = "_ltx_transformer" in module.__dict__
            module.__class__ = ReferencePrecisionRotaryPosEmbed if marked else LTX2AudioVideoRotaryPosEmbed
    return changed


def _swap_processor(attention: LTX2Attention, processor: object) -> None:
    # diffusers keeps the attention backend and the context-parallel configuration on the processor instance.
    processor._attention_backend = attention.processor._attention_backend
    processor._parallel_config = attention.processor._parallel_config
    attention.set_processor(processor)
