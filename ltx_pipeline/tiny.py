"""Tiny LTX-2 component sets built from the real diffusers classes.

Used as the product's offline default until a trained embedded model ships, and by the tests. Every component
is the class the full-size model uses; only the widths and depths differ. The weights are random: what such a
pipeline generates is noise, and it says so wherever it is used.
"""

import logging
import string

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.models.autoencoders.ltx2_diffusion_decoder import LTX2VideoDiffusionDecoderModel
from diffusers.pipelines.ltx2 import (
    LTX2DurationHead,
    LTX2LatentUpsamplerModel,
    LTX2TextConnectors,
    LTX2Vocoder,
    LTX2VocoderWithBWE,
)
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
    GemmaTokenizer,
)

logger = logging.getLogger(__name__)

RANDOM_MODEL_LABEL = "tiny LTX-2.3 with RANDOM weights (generates noise; for trying the product, not for results)"

# Words the tiny tokenizer knows whole; anything else is spelled out in single characters.
TINY_VOCABULARY = (
    "a an the of in on at with and is are small large big red green blue yellow white black ball balls "
    "bounces bouncing drops falls floor wood wooden metal glass stone room hall dark bright echo echoes reverb "
    "drum bell lamp beep beeps click clicks knock thud clank ring rings ringing sound sounds loud soft quiet "
    "man woman person dog cat car street city rain wind music voice speaks says talking sings bird birds water"
).split()


def build_word_tokenizer(words: list[str] | tuple[str, ...] = TINY_VOCABULARY) -> GemmaTokenizer:
    """A Gemma tokenizer, made offline, that knows `words` whole and spells anything else in characters."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    vocab: dict[str, int] = {token: index for index, token in enumerate(specials)}
    characters = ["▁"] + list(string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation)
    for character in characters:
        vocab.setdefault(character, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        piece = "▁" + word
        # BPE builds a word from its characters one merge at a time: "▁b" + "a", "▁ba" + "l", ...
        for end in range(2, len(piece) + 1):
            left, right = piece[: end - 1], piece[end - 1]
            if piece[:end] not in vocab:
                vocab[piece[:end]] = len(vocab)
                merges.append((left, right))
    # `known_words` is saved in tokenizer_config.json, so a pipeline can name the words a prompt uses in vain.
    return GemmaTokenizer(vocab=vocab, merges=merges, known_words=list(words))


TINY_VERSIONS: tuple[str, ...] = ("2.5", "2.3", "2.0")


def tiny_component_kwargs(version: str = "2.3") -> dict[str, dict]:
    """Constructor arguments for each tiny component, in the LTX-2.5, LTX-2.3 or LTX-2.0 layout.

    LTX-2.5 is LTX-2.3 with a Gemma 4 text encoder, a video feed-forward without biases, a keyframe position
    embedding and a duration head (docs/LTX-2.5.md)."""
    if version not in TINY_VERSIONS:
        raise ValueError(f"`version` must be one of {', '.join(TINY_VERSIONS)}; got {version!r}.")
    is_2_5 = version == "2.5"
    is_2_3 = version in ("2.3", "2.5")  # 2.5 keeps 2.3's transformer, connectors, VAEs and vocoder
    text_width, text_layers = 32, 2
    video_dim, audio_dim = 32, 16  # transformer widths: heads x head_dim
    kwargs: dict[str, dict] = {
        "text_encoder": _tiny_gemma4_kwargs(text_width, text_layers)
        if is_2_5
        else {
            "text_config": {
                "hidden_size": text_width,
                "intermediate_size": 64,
                "num_hidden_layers": text_layers,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "vocab_size": 512,
                "max_position_embeddings": 1024,
                "sliding_window": 64,
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
            "caption_channels": text_width,
            "text_proj_in_factor": text_layers + 1,
            "video_connector_num_attention_heads": 2,
            "video_connector_attention_head_dim": (video_dim if is_2_3 else text_width) // 2,
            "video_connector_num_layers": 1,
            "video_connector_num_learnable_registers": 8,
            "audio_connector_num_attention_heads": 2,
            # LTX-2.0 connectors keep the text width; its transformer projects captions to each stream itself.
            "audio_connector_attention_head_dim": (audio_dim if is_2_3 else text_width) // 2,
            "audio_connector_num_layers": 1,
            "audio_connector_num_learnable_registers": 8,
            "connector_rope_base_seq_len": 64,
            "rope_type": "split",
            "video_gated_attn": is_2_3,
            "audio_gated_attn": is_2_3,
            "per_modality_projections": is_2_3,
            "video_hidden_dim": video_dim,
            "audio_hidden_dim": audio_dim,
        },
        "transformer": {
            "in_channels": 8,
            "out_channels": 8,
            "num_attention_heads": 2,
            "attention_head_dim": video_dim // 2,
            "cross_attention_dim": video_dim,
            "audio_in_channels": 32,  # audio latent channels (2) x latent mel bins (64 / 4)
            "audio_out_channels": 32,
            "audio_num_attention_heads": 2,
            "audio_attention_head_dim": audio_dim // 2,
            "audio_cross_attention_dim": audio_dim,
            "num_layers": 2,
            "caption_channels": text_width,
            "rope_type": "split",
            "rope_double_precision": False,
            "gated_attn": is_2_3,
            "audio_gated_attn": is_2_3,
            "cross_attn_mod": is_2_3,
            "audio_cross_attn_mod": is_2_3,
            "use_prompt_embeddings": not is_2_3,
            "ff_bias": not is_2_5,
            "use_keyframes_abs_pos_embedding": is_2_5,
        },
        "vae": {
            "latent_channels": 8,
            "block_out_channels": (8, 8, 8, 8),
            "decoder_block_out_channels": (8, 16, 32),
            "layers_per_block": (1, 1, 1, 1, 1),
            "decoder_layers_per_block": (1, 1, 1, 1),
            "patch_size": 4,
            "spatial_compression_ratio": 32,
            "temporal_compression_ratio": 8,
            # Zero padding lets a 64 px two-stage run decode its 1 x 1 latent stage-1 preview; the real decoder
            # pads by reflection and needs at least 2 x 2 latents (128 px two-stage output).
            "decoder_spatial_padding_mode": "zeros",
        },
        "audio_vae": {
            "base_channels": 32,  # == latent_channels * mel_bins / 4
            "latent_channels": 2,
            "mel_bins": 64,
            "ch_mult": (1, 1, 1),
            "num_res_blocks": 1,
        },
        # Samples per mel frame are the product of the upsample factors: 160 gives 16 kHz from 100 mel frames
        # per second, 240 gives 24 kHz; the BWE stage turns an 80-sample hop into 240 samples (16 -> 48 kHz).
        # Each kernel minus its factor is even, or the transposed convolutions add a sample.
        "vocoder": (
            {
                "in_channels": 128,  # 2 channels x 64 mel bins
                "hidden_channels": 16,
                "upsample_kernel_sizes": [16, 8, 11],
                "upsample_factors": [8, 4, 5],
                "resnet_kernel_sizes": [3],
                "resnet_dilations": [[1, 3]],
                "bwe_in_channels": 128,
                "bwe_hidden_channels": 16,
                "bwe_upsample_kernel_sizes": [12, 11, 16],
                "bwe_upsample_factors": [6, 5, 8],
                "bwe_resnet_kernel_sizes": [3],
                "bwe_resnet_dilations": [[1, 3]],
            }
            if is_2_3
            else {
                "in_channels": 128,
                "hidden_channels": 16,
                "upsample_kernel_sizes": [16, 11, 12],
                "upsample_factors": [8, 5, 6],
                "resnet_kernel_sizes": [3],
                "resnet_dilations": [[1, 3]],
                "output_sampling_rate": 24_000,
            }
        ),
        "latent_upsampler": {"in_channels": 8, "mid_channels": 32, "num_blocks_per_stage": 1},
    }
    if is_2_5:
        # The diffusion decoder (LTX2VideoDiffusionDecoderModel). Neighbourhood-attention kernels of 1 so a 2 x 2
        # latent (64 px) decodes; the real ones are 3 x 7 x 7 down to 3 x 5 x 5 and 11 x 11 x 11.
        kwargs["diffusion_decoder"] = {
            "latent_channels": 8,
            "decoder_head_dim": 8,
            "decoder_stage_channels": (64, 32, 16, 16, 8),
            "decoder_stage_depths": (1, 1, 1, 1, 1),
            "decoder_stage_kernels": ((1, 1, 1),) * 4,
            "decoder_stage5_kernel": (1, 1, 1),
            "decoder_t_emb_dim": 16,
        }
        # Widths of the connectors' outputs, as in the real head (4096 / 2048 there).
        kwargs["duration_head"] = {
            "video_cross_attention_dim": video_dim,
            "audio_cross_attention_dim": audio_dim,
            "pooler_hidden_dim": 16,
            "num_pooler_heads": 4,
            "mlp_hidden_dim": 16,
        }
    return kwargs


def _tiny_gemma4_kwargs(text_width: int, text_layers: int) -> dict:
    """Gemma4UnifiedConfig arguments: text only (the LTX-2.5 encoder's vision and audio towers are optional)."""
    return {
        "text_config": {
            "hidden_size": text_width,
            "intermediate_size": 64,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "vocab_size": 512,
            "max_position_embeddings": 1024,
            "sliding_window": 64,
            "layer_types": ["sliding_attention"] * (text_layers - 1) + ["full_attention"],
        },
        "vision_config": None,
        "audio_config": None,
    }


def build_tiny_components(version: str = "2.3", seed: int = 0) -> dict[str, object]:
    """Randomly initialised tiny components, seeded, ready for `TI2VidTwoStagesPipeline(**components)`.

    LTX-2.5's optional duration head is not among them: `build_tiny_duration_head` makes one."""
    kwargs = tiny_component_kwargs(version)
    torch.manual_seed(seed)
    if version == "2.5":
        text_encoder = Gemma4UnifiedForConditionalGeneration(Gemma4UnifiedConfig(**kwargs["text_encoder"])).eval()
    else:
        text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(**kwargs["text_encoder"])).eval()
    vocoder_class = LTX2Vocoder if version == "2.0" else LTX2VocoderWithBWE
    return {
        "tokenizer": build_word_tokenizer(),
        "text_encoder": text_encoder,
        "connectors": LTX2TextConnectors(**kwargs["connectors"]).eval(),
        "transformer": LTX2VideoTransformer3DModel(**kwargs["transformer"]).eval(),
        "vae": AutoencoderKLLTX2Video(**kwargs["vae"]).eval(),
        "audio_vae": AutoencoderKLLTX2Audio(**kwargs["audio_vae"]).eval(),
        "vocoder": vocoder_class(**kwargs["vocoder"]).eval(),
        "latent_upsampler": LTX2LatentUpsamplerModel(**kwargs["latent_upsampler"]).eval(),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def build_tiny_duration_head(seed: int = 0) -> LTX2DurationHead:
    """A randomly initialised tiny LTX-2.5 duration head, seeded, sized for `build_tiny_components("2.5")`."""
    torch.manual_seed(seed)
    return LTX2DurationHead(**tiny_component_kwargs("2.5")["duration_head"]).eval()


def build_tiny_diffusion_decoder(seed: int = 0) -> LTX2VideoDiffusionDecoderModel:
    """A randomly initialised tiny LTX-2.5 diffusion video decoder, seeded, for the latents of
    `build_tiny_components("2.5")` (8 channels)."""
    torch.manual_seed(seed)
    return LTX2VideoDiffusionDecoderModel(**tiny_component_kwargs("2.5")["diffusion_decoder"]).eval()
