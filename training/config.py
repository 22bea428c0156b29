"""The embedded model's architecture: every component is the diffusers LTX-2.3 class, at a small config.

Sized so that the whole model is < 60 MB in bf16 and a 97-frame clip at the demo resolution (128 x 128, stage 1 at
64 x 64) generates end to end in well under 20 s on a 2-core CPU.
"""

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2VocoderWithBWE
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

from ltx_pipeline.tiny import build_word_tokenizer, tiny_component_kwargs
from world import WORLD_VOCABULARY

DEMO_HEIGHT = 128  # px, two-stage output; stage 1 runs at 64 x 64
DEMO_WIDTH = 128
DEMO_NUM_FRAMES = 97
DEMO_FRAME_RATE = 24.0
MAX_PROMPT_TOKENS = 128  # captions take ~30 tokens; a multiple of the connectors' 8 learnable registers

TEXT_WIDTH, TEXT_LAYERS = 64, 2
VIDEO_DIM, AUDIO_DIM = 192, 96  # transformer widths: heads x 32
VIDEO_LATENT_CHANNELS = 32
AUDIO_LATENT_CHANNELS = 4  # x 16 latent mel bins = 64 transformer audio channels
MEL_BINS = 64


VARIANTS = ("embedded", "tiny")


def embedded_component_kwargs(variant: str = "embedded") -> dict[str, dict]:
    """Constructor arguments of each component: the embedded model, or the toy sizes of `ltx_pipeline.tiny` (for
    smoke tests of the training code)."""
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}; got {variant!r}.")
    if variant == "tiny":
        return tiny_component_kwargs("2.3")
    return {
        "text_encoder": {
            "text_config": {
                "hidden_size": TEXT_WIDTH,
                "intermediate_size": 128,
                "num_hidden_layers": TEXT_LAYERS,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 32,
                "vocab_size": 512,
                "max_position_embeddings": 256,
                "sliding_window": 128,
            },
            # Gemma3ForConditionalGeneration needs a vision tower even when only text goes in.
            "vision_config": {
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 28,
                "patch_size": 14,
            },
            "mm_tokens_per_image": 4,
        },
        "connectors": {
            "caption_channels": TEXT_WIDTH,
            "text_proj_in_factor": TEXT_LAYERS + 1,
            "video_connector_num_attention_heads": VIDEO_DIM // 32,
            "video_connector_attention_head_dim": 32,
            "video_connector_num_layers": 1,
            "video_connector_num_learnable_registers": 8,
            "audio_connector_num_attention_heads": AUDIO_DIM // 32,
            "audio_connector_attention_head_dim": 32,
            "audio_connector_num_layers": 1,
            "audio_connector_num_learnable_registers": 8,
            "connector_rope_base_seq_len": MAX_PROMPT_TOKENS,
            "rope_type": "split",
            "video_gated_attn": True,
            "audio_gated_attn": True,
            "per_modality_projections": True,
            "video_hidden_dim": VIDEO_DIM,
            "audio_hidden_dim": AUDIO_DIM,
        },
        "transformer": {
            "in_channels": VIDEO_LATENT_CHANNELS,
            "out_channels": VIDEO_LATENT_CHANNELS,
            "num_attention_heads": VIDEO_DIM // 32,
            "attention_head_dim": 32,
            "cross_attention_dim": VIDEO_DIM,
            "audio_in_channels": AUDIO_LATENT_CHANNELS * MEL_BINS // 4,
            "audio_out_channels": AUDIO_LATENT_CHANNELS * MEL_BINS // 4,
            "audio_num_attention_heads": AUDIO_DIM // 32,
            "audio_attention_head_dim": 32,
            "audio_cross_attention_dim": AUDIO_DIM,
            "num_layers": 8,
            "caption_channels": TEXT_WIDTH,
            "rope_type": "split",
            "rope_double_precision": False,
            "gated_attn": True,
            "audio_gated_attn": True,
            "cross_attn_mod": True,
            "audio_cross_attn_mod": True,
            "use_prompt_embeddings": False,
        },
        "vae": {
            "latent_channels": VIDEO_LATENT_CHANNELS,
            "block_out_channels": (32, 64, 128, 128),
            "decoder_block_out_channels": (32, 64, 128),
            "layers_per_block": (1, 1, 1, 1, 1),
            "decoder_layers_per_block": (1, 1, 1, 1),
            # 16x (patch 2 x three 2x downsamples), not the full model's 32x: at 128 px a 32x latent grid is 4 x 4
            # and a first training run (2,200 steps) lost the ball entirely; 8 x 8 cells keep it local.
            "patch_size": 2,
            "spatial_compression_ratio": 16,
            "temporal_compression_ratio": 8,
        },
        "audio_vae": {
            "base_channels": AUDIO_LATENT_CHANNELS * MEL_BINS // 4,  # must equal latent_channels * mel_bins / 4
            "latent_channels": AUDIO_LATENT_CHANNELS,
            "mel_bins": MEL_BINS,
            "ch_mult": (1, 1, 1),
            "num_res_blocks": 1,
        },
        # 160 samples per mel frame at 16 kHz (8 x 4 x 5); the BWE stage makes 48 kHz (its residual starts at zero:
        # the world has nothing above 8 kHz, so the upsampled 16 kHz signal is already right).
        "vocoder": {
            "in_channels": 2 * MEL_BINS,
            "hidden_channels": 128,
            "upsample_kernel_sizes": [16, 8, 11],
            "upsample_factors": [8, 4, 5],
            "resnet_kernel_sizes": [3, 7],
            "resnet_dilations": [[1, 3], [1, 3]],
            "bwe_in_channels": 2 * MEL_BINS,
            "bwe_hidden_channels": 8,
            "bwe_upsample_kernel_sizes": [12, 11, 16],
            "bwe_upsample_factors": [6, 5, 8],
            "bwe_resnet_kernel_sizes": [3],
            "bwe_resnet_dilations": [[1, 3]],
            "antialias": False,  # anti-aliased activations triple the CPU time for no audible gain here
            "bwe_antialias": False,
        },
        "latent_upsampler": {"in_channels": VIDEO_LATENT_CHANNELS, "mid_channels": 64, "num_blocks_per_stage": 2},
    }


def build_tokenizer() -> GemmaTokenizer:
    """The world's words whole, anything else spelled in characters (the pipeline warns about those)."""
    tokenizer = build_word_tokenizer(WORLD_VOCABULARY)
    tokenizer.model_max_length = MAX_PROMPT_TOKENS
    return tokenizer


def build_components(seed: int = 0, variant: str = "embedded") -> dict[str, object]:
    """Freshly initialised components, seeded."""
    kwargs = embedded_component_kwargs(variant)
    torch.manual_seed(seed)
    vocoder = LTX2VocoderWithBWE(**kwargs["vocoder"])
    with torch.no_grad():  # the BWE residual starts silent; see the vocoder config above
        vocoder.bwe_generator.conv_out.weight.zero_()
    return {
        "tokenizer": build_tokenizer(),
        "text_encoder": Gemma3ForConditionalGeneration(Gemma3Config(**kwargs["text_encoder"])).eval(),
        "connectors": LTX2TextConnectors(**kwargs["connectors"]).eval(),
        "transformer": LTX2VideoTransformer3DModel(**kwargs["transformer"]).eval(),
        "vae": AutoencoderKLLTX2Video(**kwargs["vae"]).eval(),
        "audio_vae": AutoencoderKLLTX2Audio(**kwargs["audio_vae"]).eval(),
        "vocoder": vocoder.eval(),
        "latent_upsampler": LTX2LatentUpsamplerModel(**kwargs["latent_upsampler"]).eval(),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }
