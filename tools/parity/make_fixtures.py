"""Record the reference implementation's outputs on a tiny official LTX-2.3 file, for tests/test_parity.py.

    python tools/parity/make_fixtures.py [--venv /tmp/ltx-ref-venv] [--out tests/fixtures/parity]

Run with any Python 3.11: the script makes (or reuses) a side virtual environment holding Lightricks' `ltx-core==1.0.0`
and `ltx-pipelines==1.0.0` from PyPI, installed `--no-deps` with the few pure-Python packages they import, and
re-runs itself there. Nothing of the project is imported on that side, so what is recorded is the reference's own
arithmetic.

torchaudio: ltx-core imports it for its `AudioProcessor` (log-mel and resampling) only, and no torchaudio build
exists for torch 2.13. The script installs the torchaudio 2.11.1 wheel `--no-deps` and deletes its compiled
libraries (`torchaudio/lib/*.so`, built for another torch): torchaudio then imports without its C++ extension, and
`transforms.MelSpectrogram` and `functional.resample`, which are plain torch code, run unchanged. So the log-mel
fixture is the reference's front end, torchaudio included, not a re-implementation.

What it writes to `--out`:
- `tiny_ltx_2_3.safetensors`: a tiny official single file (`model.diffusion_model.*`, `vae.*`, `audio_vae.*`,
  `vocoder.*`, `text_embedding_projection.*`, with the `config` header of `tiny_ltx_2_3_config.json`), built with
  the reference's own configurators and proven to load back through its `ModelLedger` weight for weight;
- `tiny_upsampler.safetensors`: a tiny official spatial upsampler file;
- `reference_outputs.safetensors`: the reference's inputs and outputs (keys listed in tests/test_parity.py), with
  the run's sizes and scalar facts as JSON in its metadata.

Two tiny-model overrides, both outside the recorded arithmetic: the feature extractor's width is read from a tiny
Gemma config (the reference sizes it from Gemma-3 12B's, 3840 x 49 inputs, which would make the file 40 MB), and
the pipelines' helpers that hard-code the full model's latent channels (128 video, 8 x 16 audio) are called with
the tiny model's (8 video, 2 x 16 audio).
"""

import argparse
import json
import os
import subprocess
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REFERENCE_PACKAGES = ["ltx-core==1.0.0", "ltx-pipelines==1.0.0"]
# What ltx-core and ltx-pipelines import, less torchaudio (see the module docstring) and the Gemma weights.
SUPPORT_PACKAGES = [
    "torch==2.13.0",
    "einops",
    "numpy",
    "safetensors",
    "scipy",
    "transformers>=4.52",
    "tqdm",
    "pillow",
    "av",
]
TORCHAUDIO_WHEEL = "torchaudio==2.11.1"

# The run's sizes: stage 1 at 64 x 64 (2 x 2 latents), stage 2 at 128 x 128, 17 frames at 24 fps.
HEIGHT, WIDTH, NUM_FRAMES, FPS = 128, 128, 17, 24.0
TEXT_TOKENS = 128  # a multiple of the reference connectors' 128 learnable registers
SEED = 10
DEV_STEPS_A2V = 3
STG_BLOCKS = [1]  # the tiny transformer's last block (the real model's is 28)
RETAKE_FRAMES, RETAKE_START_S, RETAKE_END_S = 49, 0.5, 1.2


def ensure_side_venv(path: Path) -> Path:
    """The side environment's python, installing the reference into it on first use."""
    python = path / "bin" / "python"
    marker = path / ".ltx_reference_ready"
    if marker.is_file():
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *SUPPORT_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", *REFERENCE_PACKAGES, TORCHAUDIO_WHEEL], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for library in (Path(site) / "torchaudio" / "lib").glob("*.so"):
        library.unlink()  # built for another torch; without them torchaudio runs its pure-torch code only
    marker.write_text("\n".join([*REFERENCE_PACKAGES, TORCHAUDIO_WHEEL, *SUPPORT_PACKAGES]) + "\n")
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", type=Path, default=Path("/tmp/ltx-ref-venv"), help="side environment (made if absent)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "parity")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        python = ensure_side_venv(args.venv)
        command = [str(python), str(Path(__file__).resolve()), "--inside", "--out", str(args.out)]
        subprocess.run(command, check=True, cwd="/", env={**os.environ, "PYTHONPATH": ""})
        return
    args.out.mkdir(parents=True, exist_ok=True)
    record(args.out)


# --- Inside the side environment -----------------------------------------------------------------------------------


def record(out: Path) -> None:  # noqa: PLR0915 (one linear recording script)
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)
    config = json.loads((HERE / "tiny_ltx_2_3_config.json").read_text())
    checkpoint, upsampler_file = out / "tiny_ltx_2_3.safetensors", out / "tiny_upsampler.safetensors"
    upsampler_config = {
        "in_channels": 8,
        "mid_channels": 32,
        "num_blocks_per_stage": 1,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
        "spatial_scale": 2.0,
        "rational_resampler": True,
    }
    built = build_official_files(config, upsampler_config, checkpoint, upsampler_file)
    ledger = load_back(checkpoint, upsampler_file, built)
    outputs: dict[str, torch.Tensor] = {}
    facts: dict[str, object] = {}
    record_components(ledger, outputs, facts)
    record_pipelines(ledger, outputs, facts)
    record_conventions(config, outputs, facts)
    record_bfloat16_stage_1(checkpoint, outputs)
    tensors = {key: value.detach().contiguous().clone() for key, value in outputs.items()}
    save_file(tensors, str(out / "reference_outputs.safetensors"), metadata={"facts": json.dumps(facts)})
    sizes = {path.name: path.stat().st_size for path in sorted(out.glob("*.safetensors"))}
    print(json.dumps({"files": sizes, "keys": len(tensors)}, indent=1))


def tiny_gemma_config() -> object:
    """The feature extractor's input width: the tiny text encoder's (width 32, 2 layers + embeddings)."""
    from types import SimpleNamespace

    return SimpleNamespace(text_config=SimpleNamespace(hidden_size=32, num_hidden_layers=2))


def randomize(module: "object", seed: int) -> None:
    """Seeded weights everywhere: constructors leave gates and norms at 0 or 1, and the output AdaLN tables
    (`scale_shift_table`, made with torch.empty) uninitialised; those get the blocks' own init, randn / sqrt(dim)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        values = parameter.data
        noise = torch.randn(values.shape, generator=generator)
        if name.endswith("scale_shift_table"):
            values.copy_(noise / values.shape[-1] ** 0.5)
        elif values.numel() > 1 and float(values.std()) < 1e-6:  # constant: zeros, ones
            values.add_(0.1 * noise)


def round_to_bfloat16(module: "object") -> None:
    """Every weight and buffer made a bfloat16 value, so the file stores it in half the bytes and both loaders, which
    read it into float32, get exactly the tensors the reference was built and run with."""
    import torch

    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            tensor.data.copy_(tensor.data.to(torch.bfloat16).float())


def build_official_files(config: dict, upsampler_config: dict, checkpoint: Path, upsampler_file: Path) -> dict:
    """Each component from the reference's configurator, written under the official key names; returns them."""
    import torch
    from ltx_core.model.audio_vae import AudioDecoderConfigurator, AudioEncoderConfigurator, VocoderConfigurator
    from ltx_core.model.transformer import LTXModelConfigurator
    from ltx_core.model.upsampler import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae import VideoDecoderConfigurator, VideoEncoderConfigurator
    from ltx_core.text_encoders.gemma.encoders import encoder_configurator
    from safetensors.torch import save_file

    encoder_configurator.GEMMA3_CONFIG_FOR_LTX = tiny_gemma_config()
    components = {
        "transformer": LTXModelConfigurator.from_config(config),
        "embeddings_processor": encoder_configurator.EmbeddingsProcessorConfigurator.from_config(config),
        "video_encoder": VideoEncoderConfigurator.from_config(config),
        "video_decoder": VideoDecoderConfigurator.from_config(config),
        "audio_encoder": AudioEncoderConfigurator.from_config(config),
        "audio_decoder": AudioDecoderConfigurator.from_config(config),
        "vocoder": VocoderConfigurator.from_config(config),
    }
    for index, module in enumerate(components.values()):
        randomize(module, seed=100 + index)
        round_to_bfloat16(module)
    # One set of latent statistics per VAE, shared by its encoder and decoder as in the real files.
    generator = torch.Generator().manual_seed(7)
    statistics = {}
    for prefix, encoder, decoder in (
        ("vae", components["video_encoder"], components["video_decoder"]),
        ("audio_vae", components["audio_encoder"], components["audio_decoder"]),
    ):
        channels = encoder.per_channel_statistics.get_buffer("mean-of-means").shape[0]
        means = (0.2 * torch.randn(channels, generator=generator)).bfloat16().float()
        stds = (0.5 + torch.rand(channels, generator=generator)).bfloat16().float()
        for module in (encoder, decoder):
            module.per_channel_statistics.get_buffer("mean-of-means").copy_(means)
            module.per_channel_statistics.get_buffer("std-of-means").copy_(stds)
        statistics[prefix] = {"mean-of-means": means, "std-of-means": stds}

    # File key = the reference loader's SDOps run backwards (model_ledger.py's *_KEY_OPS / *_KEYS_FILTER).
    tensors: dict[str, torch.Tensor] = {}

    def add(prefix: str, module: torch.nn.Module, rename: dict[str, str] | None = None) -> None:
        for key, value in module.state_dict().items():
            for old, new in (rename or {}).items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            else:
                key = prefix + key
            tensors.setdefault(key, value.to(torch.bfloat16).contiguous())  # exact: see round_to_bfloat16

    add("model.diffusion_model.", components["transformer"])
    add(
        "",
        components["embeddings_processor"],
        {
            "feature_extractor.video_aggregate_embed.": "text_embedding_projection.video_aggregate_embed.",
            "feature_extractor.audio_aggregate_embed.": "text_embedding_projection.audio_aggregate_embed.",
            "video_connector.": "model.diffusion_model.video_embeddings_connector.",
            "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
        },
    )
    statistics_rename = {"per_channel_statistics.": "{}.per_channel_statistics."}
    for prefix, side in (("vae", "encoder"), ("vae", "decoder"), ("audio_vae", "encoder"), ("audio_vae", "decoder")):
        module = components[f"{'video' if prefix == 'vae' else 'audio'}_{side}"]
        add(f"{prefix}.{side}.", module, {k: v.format(prefix) for k, v in statistics_rename.items()})
    add("vocoder.", components["vocoder"])
    save_file(tensors, str(checkpoint), metadata={"config": json.dumps(config), "model_version": "2.3.0"})

    upsampler = LatentUpsamplerConfigurator.from_config(upsampler_config)
    randomize(upsampler, seed=200)
    round_to_bfloat16(upsampler)
    components["spatial_upsampler"] = upsampler
    upsampler_tensors = {key: value.to(torch.bfloat16).contiguous() for key, value in upsampler.state_dict().items()}
    save_file(upsampler_tensors, str(upsampler_file), metadata={"config": json.dumps(upsampler_config)})
    return components


def load_back(checkpoint: Path, upsampler_file: Path, built: dict) -> "object":
    """The reference's `ModelLedger` on the written files, checked tensor for tensor against what was built."""
    import torch
    from ltx_pipelines.utils.model_ledger import ModelLedger

    ledger = ModelLedger(
        dtype=torch.float32,
        device=torch.device("cpu"),
        checkpoint_path=str(checkpoint),
        spatial_upsampler_path=str(upsampler_file),
    )
    loaders = {
        "transformer": lambda: ledger.transformer().velocity_model,
        "embeddings_processor": ledger.gemma_embeddings_processor,
        "video_encoder": ledger.video_encoder,
        "video_decoder": ledger.video_decoder,
        "audio_encoder": ledger.audio_encoder,
        "audio_decoder": ledger.audio_decoder,
        "vocoder": ledger.vocoder,
        "spatial_upsampler": ledger.spatial_upsampler,
    }
    for name, load in loaders.items():
        loaded, expected = load().state_dict(), built[name].state_dict()
        if loaded.keys() != expected.keys():
            raise RuntimeError(f"{name}: the reference loaded other keys: {sorted(loaded.keys() ^ expected.keys())}")
        for key, value in expected.items():
            if not torch.equal(loaded[key].float(), value.float()):
                raise RuntimeError(f"{name}: the reference loaded {key} with other values")
    return ledger


def record_components(ledger: "object", outputs: dict, facts: dict) -> None:
    import torch
    from ltx_core.model.audio_vae import decode_audio, encode_audio
    from ltx_core.model.audio_vae.ops import AudioProcessor
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.video_vae import decode_video
    from ltx_core.types import Audio

    generator = torch.Generator().manual_seed(SEED)
    # Prompt embeddings: stacked Gemma hidden states (B, T, D, layers), left padded, for a positive and a negative.
    processor = ledger.gemma_embeddings_processor()
    for name, real_tokens in (("positive", 20), ("negative", 9)):
        hidden = torch.randn(1, TEXT_TOKENS, 32, 3, generator=generator)
        mask = torch.zeros(1, TEXT_TOKENS, dtype=torch.int64)
        mask[:, -real_tokens:] = 1
        hidden = hidden * mask[..., None, None]
        encoded = processor.process_hidden_states(tuple(hidden.unbind(-1)), mask, padding_side="left")
        outputs[f"text.{name}.hidden_states"] = hidden
        outputs[f"text.{name}.attention_mask"] = mask
        outputs[f"text.{name}.video"] = encoded.video_encoding
        outputs[f"text.{name}.audio"] = encoded.audio_encoding
        outputs[f"text.{name}.mask"] = encoded.attention_mask

    # Video VAE: encode a clip, decode latents (float frames and the reference's uint8 frames).
    encoder, decoder = ledger.video_encoder(), ledger.video_decoder()
    clip = torch.rand(1, 3, 9, HEIGHT // 2, WIDTH // 2, generator=generator) * 2 - 1
    outputs["video_vae.clip"] = clip
    outputs["video_vae.encoded"] = encoder(clip)
    latent = torch.randn(1, 8, 2, 2, 2, generator=generator)
    outputs["video_vae.latent"] = latent
    outputs["video_vae.decoded"] = decoder(latent)
    outputs["video_vae.decoded_uint8"] = next(iter(decode_video(latent, decoder)))

    # Spatial upsampler with the encoder's statistics (reference `upsample_video`).
    outputs["upsampler.upsampled"] = upsample_video(latent, encoder, ledger.spatial_upsampler())

    # Audio front end and VAE: a stereo clip at 16 kHz and one at 24 kHz (resampled by the reference).
    audio_encoder = ledger.audio_encoder()
    seconds = NUM_FRAMES / FPS
    for rate in (16000, 24000):
        samples = int(seconds * rate)
        times = torch.arange(samples) / rate
        waveform = torch.stack([torch.sin(2 * torch.pi * 440 * times), torch.sin(2 * torch.pi * 660 * times)])
        waveform = (0.5 * waveform + 0.05 * torch.randn(2, samples, generator=generator))[None]
        front_end = AudioProcessor(
            target_sample_rate=audio_encoder.sample_rate,
            mel_bins=audio_encoder.mel_bins,
            mel_hop_length=audio_encoder.mel_hop_length,
            n_fft=audio_encoder.n_fft,
        )
        outputs[f"audio.waveform_{rate}"] = waveform
        outputs[f"audio.log_mel_{rate}"] = front_end.waveform_to_mel(Audio(waveform=waveform, sampling_rate=rate))
    outputs["audio.encoded_16000"] = encode_audio(
        Audio(waveform=outputs["audio.waveform_16000"], sampling_rate=16000), audio_encoder
    )
    audio_latent = torch.randn(1, 2, round(seconds * 25), 16, generator=generator)
    outputs["audio.latent"] = audio_latent
    audio_decoder, vocoder = ledger.audio_decoder(), ledger.vocoder()
    outputs["audio.decoded_mel"] = audio_decoder(audio_latent)
    outputs["audio.vocoded"] = vocoder(outputs["audio.decoded_mel"])
    decoded = decode_audio(audio_latent, audio_decoder, vocoder)
    outputs["audio.decoded_waveform"] = decoded.waveform
    facts["audio_output_sampling_rate"] = decoded.sampling_rate
    facts["audio_encoder"] = {
        "sample_rate": audio_encoder.sample_rate,
        "mel_bins": audio_encoder.mel_bins,
        "mel_hop_length": audio_encoder.mel_hop_length,
        "n_fft": audio_encoder.n_fft,
    }


class Recorder:
    """An Euler stepper that records each step's latents (the reference's `EulerDiffusionStep`, unchanged)."""

    def __init__(self, outputs: dict, prefix: str):
        from ltx_core.components.diffusion_steps import EulerDiffusionStep

        self.euler, self.outputs, self.prefix, self.calls = EulerDiffusionStep(), outputs, prefix, 0

    def step(self, sample, denoised_sample, sigmas, step_index, **kwargs):  # noqa: ANN001, ANN201
        stream = "video" if self.calls % 2 == 0 else "audio"  # the loop steps video, then audio
        self.calls += 1
        stepped = self.euler.step(sample, denoised_sample, sigmas, step_index, **kwargs)
        self.outputs[f"{self.prefix}.step{step_index + 1}.{stream}"] = stepped
        self.outputs[f"{self.prefix}.step{step_index + 1}.{stream}_denoised"] = denoised_sample
        return stepped


def record_pipelines(ledger: "object", outputs: dict, facts: dict) -> None:  # noqa: PLR0915
    import torch
    from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.conditioning import VideoConditionByKeyframeIndex, VideoConditionByLatentIndex
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.video_vae import decode_video
    from ltx_core.tools import AudioLatentTools
    from ltx_core.types import AudioLatentShape, VideoPixelShape
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
    from ltx_pipelines.utils.helpers import (
        create_noised_state,
        multi_modal_guider_denoising_func,
        noise_video_state,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.samplers import euler_denoising_loop
    from ltx_pipelines.utils.types import PipelineComponents

    device, dtype = torch.device("cpu"), torch.float32
    components = PipelineComponents(dtype=dtype, device=device)
    components.video_latent_channels = 8  # the tiny model's (the reference hard-codes the real model's 128)
    transformer, encoder = ledger.transformer(), ledger.video_encoder()
    upsampler, decoder = ledger.spatial_upsampler(), ledger.video_decoder()
    text = {name: (outputs[f"text.{name}.video"], outputs[f"text.{name}.audio"]) for name in ("positive", "negative")}
    (v_context, a_context), (v_negative, _) = text["positive"], text["negative"]
    stage_1 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    stage_2 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS)
    audio_frames = AudioLatentShape.from_video_pixel_shape(stage_1).frames
    facts.update(
        height=HEIGHT,
        width=WIDTH,
        num_frames=NUM_FRAMES,
        frame_rate=FPS,
        audio_latent_frames=audio_frames,
        distilled_stage_1_sigmas=DISTILLED_SIGMA_VALUES,
        distilled_stage_2_sigmas=STAGE_2_DISTILLED_SIGMA_VALUES,
    )

    def audio_state(noiser, noise_scale=1.0, initial=None, frozen=False):  # noqa: ANN001, ANN202
        # helpers.noise_audio_state with the tiny model's 2 x 16 audio latent channels.
        tools = AudioLatentTools(components.audio_patchifier, AudioLatentShape(1, 2, audio_frames, 16))
        state = create_noised_state(tools, [], noiser, dtype, device, noise_scale, initial)
        if frozen:  # helpers.denoise_video_only: noise 0 and a zero denoise mask
            state = create_noised_state(tools, [], noiser, dtype, device, 0.0, initial)
            from dataclasses import replace

            state = replace(state, denoise_mask=torch.zeros_like(state.denoise_mask))
        return state, tools

    def run(
        prefix,
        shape,
        sigmas,
        denoise_fn,
        noiser,
        conditionings=(),
        noise_scale=1.0,
        video=None,
        audio=None,
        freeze_audio=False,
    ):  # noqa: ANN001, ANN202, E501
        # helpers.denoise_audio_video / denoise_video_only, with the initial states recorded.
        video_state, video_tools = noise_video_state(
            shape, noiser, list(conditionings), components, dtype, device, noise_scale, video
        )
        audio_state_, audio_tools = audio_state(noiser, noise_scale, audio, frozen=freeze_audio)
        outputs[f"{prefix}.initial_video"] = video_state.latent
        outputs[f"{prefix}.initial_audio"] = audio_state_.latent
        outputs[f"{prefix}.video_denoise_mask"] = video_state.denoise_mask
        sigmas = torch.tensor(sigmas, dtype=torch.float32)
        video_state, audio_state_ = euler_denoising_loop(
            sigmas, video_state, audio_state_, Recorder(outputs, prefix), denoise_fn
        )
        video_state = video_tools.unpatchify(video_tools.clear_conditioning(video_state))
        audio_state_ = audio_tools.unpatchify(audio_tools.clear_conditioning(audio_state_))
        outputs[f"{prefix}.final_video"] = video_state.latent
        outputs[f"{prefix}.final_audio"] = audio_state_.latent
        return video_state.latent, audio_state_.latent

    simple = simple_denoising_func(v_context, a_context, transformer)

    # T2AV, distilled: stage 1, upsampler, stage 2, decode.
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED))
    video, audio = run("t2av.stage1", stage_1, DISTILLED_SIGMA_VALUES, simple, noiser)
    upsampled = upsample_video(video[:1], encoder, upsampler)
    outputs["t2av.stage2.upsampled"] = upsampled
    video, audio = run(
        "t2av.stage2", stage_2, STAGE_2_DISTILLED_SIGMA_VALUES, simple, noiser,
        noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], video=upsampled, audio=audio,
    )  # fmt: skip
    outputs["t2av.decoded_uint8"] = next(iter(decode_video(video, decoder)))

    # One dev step with every guidance term (CFG, STG, modality isolation, rescale) on both streams.
    dev_sigmas = LTX2Scheduler().execute(steps=30)
    outputs["dev.sigmas_30"] = dev_sigmas
    video_params = MultiModalGuiderParams(
        cfg_scale=3.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=STG_BLOCKS
    )
    audio_params = MultiModalGuiderParams(
        cfg_scale=7.0, stg_scale=1.0, rescale_scale=0.7, modality_scale=3.0, stg_blocks=STG_BLOCKS
    )
    passes = []

    def recording_transformer(**kwargs):  # noqa: ANN003, ANN202
        denoised = transformer(**kwargs)
        passes.append(denoised)
        return denoised

    guided = multi_modal_guider_denoising_func(
        MultiModalGuider(params=video_params, negative_context=v_negative),
        MultiModalGuider(params=audio_params, negative_context=text["negative"][1]),
        v_context,
        a_context,
        recording_transformer,
    )
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED + 1))
    run("dev", stage_1, dev_sigmas[:2].tolist(), guided, noiser)
    for name, (video_pass, audio_pass) in zip(("cond", "uncond", "perturbed", "isolated"), passes, strict=True):
        outputs[f"dev.{name}.video"], outputs[f"dev.{name}.audio"] = video_pass, audio_pass
    facts["dev_guidance"] = {"video": video_params.__dict__, "audio": audio_params.__dict__}

    # A2V: encoded audio held clean; stage 1 dev-guided on video only, stage 2 distilled.
    audio_latent = outputs["audio.encoded_16000"][:, :, :audio_frames]
    outputs["a2v.audio_latent"] = audio_latent
    a2v_sigmas = LTX2Scheduler().execute(steps=DEV_STEPS_A2V)
    outputs["a2v.stage1.sigmas"] = a2v_sigmas
    stage_1_guided = multi_modal_guider_denoising_func(
        MultiModalGuider(params=video_params, negative_context=v_negative),
        MultiModalGuider(params=MultiModalGuiderParams()),
        v_context,
        a_context,
        transformer,
    )
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED + 2))
    video, _ = run(
        "a2v.stage1", stage_1, a2v_sigmas.tolist(), stage_1_guided, noiser, audio=audio_latent, freeze_audio=True
    )
    upsampled = upsample_video(video[:1], encoder, upsampler)
    outputs["a2v.stage2.upsampled"] = upsampled
    run(
        "a2v.stage2", stage_2, STAGE_2_DISTILLED_SIGMA_VALUES, simple, noiser,
        noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], video=upsampled, audio=audio_latent, freeze_audio=True,
    )  # fmt: skip

    # Image to video (the first frame, strength 1) and a keyframe at frame 8, distilled stage 1.
    generator = torch.Generator().manual_seed(SEED + 3)
    image = torch.rand(1, 3, 1, HEIGHT // 2, WIDTH // 2, generator=generator) * 2 - 1
    outputs["i2v.image"] = image
    image_latent = encoder(image)
    outputs["i2v.image_latent"] = image_latent
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED + 4))
    first_frame = VideoConditionByLatentIndex(latent=image_latent, strength=1.0, latent_idx=0)
    run("i2v", stage_1, DISTILLED_SIGMA_VALUES, simple, noiser, conditionings=[first_frame])
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED + 5))
    keyframe = VideoConditionByKeyframeIndex(keyframes=image_latent, frame_idx=8, strength=1.0)
    run("keyframe", stage_1, DISTILLED_SIGMA_VALUES, simple, noiser, conditionings=[keyframe])
    facts["keyframe_frame_index"] = 8


def record_bfloat16_stage_1(checkpoint: Path, outputs: dict) -> None:
    """Distilled T2AV stage 1 as the reference runs it for real: weights, latents and video positions in bfloat16."""
    import torch
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_core.tools import AudioLatentTools
    from ltx_core.types import AudioLatentShape, VideoPixelShape
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES
    from ltx_pipelines.utils.helpers import create_noised_state, noise_video_state, simple_denoising_func
    from ltx_pipelines.utils.model_ledger import ModelLedger
    from ltx_pipelines.utils.samplers import euler_denoising_loop
    from ltx_pipelines.utils.types import PipelineComponents

    device, dtype = torch.device("cpu"), torch.bfloat16
    ledger = ModelLedger(dtype=dtype, device=device, checkpoint_path=str(checkpoint))
    components = PipelineComponents(dtype=dtype, device=device)
    components.video_latent_channels = 8
    context = [outputs[f"text.positive.{stream}"].to(dtype) for stream in ("video", "audio")]
    shape = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    noiser = GaussianNoiser(torch.Generator().manual_seed(SEED + 7))
    video_state, _ = noise_video_state(shape, noiser, [], components, dtype, device)
    audio_shape = AudioLatentShape.from_video_pixel_shape(shape, channels=2, mel_bins=16)
    audio_state = create_noised_state(
        AudioLatentTools(components.audio_patchifier, audio_shape), [], noiser, dtype, device
    )
    outputs["bf16.stage1.context_video"], outputs["bf16.stage1.context_audio"] = context
    outputs["bf16.stage1.initial_video"] = video_state.latent
    outputs["bf16.stage1.initial_audio"] = audio_state.latent
    outputs["bf16.stage1.video_positions"] = video_state.positions
    sigmas = torch.tensor(DISTILLED_SIGMA_VALUES)
    denoise = simple_denoising_func(*context, ledger.transformer())
    video_state, audio_state = euler_denoising_loop(
        sigmas, video_state, audio_state, Recorder(outputs, "bf16.stage1"), denoise
    )
    outputs["bf16.stage1.final_video"] = video_state.latent
    outputs["bf16.stage1.final_audio"] = audio_state.latent


def record_conventions(config: dict, outputs: dict, facts: dict) -> None:
    import copy

    import torch
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.model.video_vae import VideoDecoderConfigurator, VideoEncoderConfigurator
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape, VideoPixelShape
    from ltx_pipelines.retake import TemporalRegionMask

    # VAE header keys a file may omit: what the reference's configurators build then.
    bare = copy.deepcopy(config)
    for key in ("timestep_conditioning", "spatial_padding_mode"):
        bare["vae"].pop(key, None)

    def padding_mode(module: torch.nn.Module) -> str:
        return next(layer.padding_mode for layer in module.modules() if isinstance(layer, torch.nn.Conv3d))

    facts["vae_header_defaults"] = {
        "decoder_timestep_conditioning": bool(VideoDecoderConfigurator.from_config(bare).timestep_conditioning),
        "decoder_spatial_padding_mode": padding_mode(VideoDecoderConfigurator.from_config(bare)),
        "encoder_spatial_padding_mode": padding_mode(VideoEncoderConfigurator.from_config(bare)),
        "encoder_padding_mode_of_this_file": padding_mode(VideoEncoderConfigurator.from_config(config)),
    }

    # Retake: the denoise masks of TemporalRegionMask for [0.5 s, 1.2 s) of a 49-frame clip at 24 fps, 64 x 64.
    shape = VideoPixelShape(batch=1, frames=RETAKE_FRAMES, width=64, height=64, fps=FPS)
    video_tools = VideoLatentTools(
        VideoLatentPatchifier(patch_size=1),
        VideoLatentShape.from_pixel_shape(shape, latent_channels=8),
        FPS,
    )
    audio_tools = AudioLatentTools(
        AudioPatchifier(patch_size=1),
        AudioLatentShape.from_video_pixel_shape(shape, channels=2, mel_bins=16),
    )
    region = TemporalRegionMask(start_time=RETAKE_START_S, end_time=RETAKE_END_S, fps=FPS)
    for name, tools in (("video", video_tools), ("audio", audio_tools)):
        state = tools.create_initial_state(torch.device("cpu"), torch.float32)
        outputs[f"retake.{name}_denoise_mask"] = region.apply_to(state, tools).denoise_mask
    facts["retake"] = {
        "num_frames": RETAKE_FRAMES,
        "frame_rate": FPS,
        "height": 64,
        "width": 64,
        "start_s": RETAKE_START_S,
        "end_s": RETAKE_END_S,
    }


if __name__ == "__main__":
    main()
