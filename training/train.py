"""Train the embedded model on the bouncing-ball world, one component (stage) at a time.

    python -m training.train --stage video_vae|audio_vae|vocoder|upsampler|transformer --steps N --out DIR [--resume]

Stages and what they need: video_vae, audio_vae and vocoder train from world clips alone (run them side by side);
upsampler needs DIR/vae; transformer (with the text encoder and connectors) needs DIR/vae and DIR/audio_vae.
Every stage saves its components in diffusers format under DIR/<component key> (bf16), its step count in
DIR/<stage>_state.json and its settings in DIR/<stage>_settings.json; `--resume` continues from them.
`--max-minutes` stops a stage in time to save (a device command lasts at most 10 minutes).
"""

import argparse
import copy
import json
import math
import subprocess
import time
import types
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2Pipeline, LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2VocoderWithBWE
from transformers import Gemma3ForConditionalGeneration

from ltx_pipeline import constants
from ltx_pipeline.audio import log_mel_spectrogram
from training import config
from training.data import (
    WORLDS,
    ClipBatch,
    downsample_video,
    frames_to_video,
    motion_weight,
    render_clips,
    seam_cut,
)
from world.clip import TRAINING_CLIP_KINDS
from world.detectors import BALL_MIN_SATURATION, BALL_MIN_VALUE, MIN_BALL_PIXELS
from world.render import FLOOR_LINE

STAGES = ("video_vae", "audio_vae", "vocoder", "upsampler", "transformer")
STAGE_COMPONENTS = {
    "video_vae": ("vae",),
    "audio_vae": ("audio_vae",),
    "vocoder": ("vocoder",),
    "upsampler": ("latent_upsampler",),
    "transformer": ("transformer", "connectors", "text_encoder"),
}
COMPONENT_CLASSES = {
    "vae": AutoencoderKLLTX2Video,
    "audio_vae": AutoencoderKLLTX2Audio,
    "vocoder": LTX2VocoderWithBWE,
    "latent_upsampler": LTX2LatentUpsamplerModel,
    "transformer": LTX2VideoTransformer3DModel,
    "connectors": LTX2TextConnectors,
    "text_encoder": Gemma3ForConditionalGeneration,
}
DEFAULTS = {  # per stage: batch size, learning rate, number of training clips
    "video_vae": {"batch_size": 8, "lr": 1e-3, "num_clips": 1024},
    "audio_vae": {"batch_size": 32, "lr": 1e-3, "num_clips": 2048},
    "vocoder": {"batch_size": 32, "lr": 2e-3, "num_clips": 2048},
    "upsampler": {"batch_size": 16, "lr": 1e-3, "num_clips": 512},
    "transformer": {
        "batch_size": 64,
        "lr": 4e-4,
        "num_clips": 4096,
        "mid_scene_fraction": 0.5,
        "continuation_fraction": 0.3,
        "continuation_copy_share": 0.75,
    },
}
STAGE_OPTION_DEFAULTS = {  # stages without their own
    "mid_scene_fraction": 0.0,
    "continuation_fraction": 0.0,
    "continuation_copy_share": 0.0,
}
VIDEO_WINDOW_FRAMES = 33  # VAE training crops (8k + 1 frames)
MOVING_PIXEL_GAIN = 40.0  # loss weight on moving pixels (REFERENCE.md: the ball vanished without it)
# --impact-frame-gain weighs the frames around each impact too: 8 frames share a latent frame, and a decoder that
# smooths the bounce's V (the ball stopping short of the floor) loses the instant sync is judged by.
IMPACT_FRAME_RADIUS = 2
# --ball-row-gain adds a loss on what the sync detector reads (world/detectors.py, `ball_rows`): the ball's centroid row
# in each frame, from a soft version of the detector's ball mask: 0 below each of its thresholds, rising linearly to 1
# over this much above it (exactly 0 on the greyer, darker background, which would otherwise pull the centroid).
BALL_MASK_RAMP = 0.05
KL_WEIGHT = 1e-4  # per latent element, both VAEs
VOCODER_CROP_FRAMES = 128  # mel frames per vocoder training crop (1.28 s)
CAPTION_DROPOUT = 0.1  # empty prompt: what CFG's unconditional pass sees
ISOLATED_FRACTION = 0.15  # batches with cross-modal attention off: what modality guidance's extra pass sees
# Transformer loss weights: 1 + gain on the video latent tokens a ball covers and on the audio latent frames of an
# impact's onset (13-25% and 11% of them on the world's clips), which an unweighted loss spends its steps on least.
LATENT_MOTION_GAIN = 4.0
AUDIO_ONSET_GAIN = 4.0
# --audio-tail-gain weighs the audio latent frames after each onset too, up to this long after it: the window in which
# the sound detectors hear material and room (world/detectors.py, `sound_features`: 60-500 ms after each onset).
AUDIO_TAIL_SECONDS = 0.5
# --decoded-ball-row-gain decodes the transformer's clean-video estimate of this many clips of each batch (the first
# ones; the decoder, frozen, is the cost: its activations for the gradient) and adds the decoder's ball-row loss on it.
DECODED_BALL_ROW_CLIPS = 4
SEAM_ENCODE_BATCH = 16  # seam clips' scenes encoded at once (up to twice a clip's frames: half the clips' batch)
# How often each transformer training case is drawn: both streams at one sigma (text to audio+video), audio clean
# (audio to video), video clean (video to audio), independent sigmas.
TRANSFORMER_CASES = {"joint": 0.55, "audio_clean": 0.3, "video_clean": 0.05, "independent": 0.1}
# --continuation-fraction: a share of the samples whose video is being denoised also hold their first 1 ...
# CONTINUATION_MAX_HELD_FRAMES latent frames clean, as every long-form window after the first holds the window before's
# last ones (ltx_pipeline/long_form.py): on top of the joint case that is text-to-audio+video continuation, of the
# clean-audio case audio-to-video continuation.
CONTINUATION_MAX_HELD_FRAMES = constants.LONG_FORM_OVERLAP_LATENT_FRAMES
# With --continuation-copy-share > 0, this share of the mid-scene clips start at a seam start (`training.data
# .seam_start_step`) and are also encoded as their scene's latents from the cut (`seam_cut`): the clips a "copy"
# continuation sample is drawn from. Half: as many as the other mid-scene clips, ~2x the draws of an average clip at
# the default shares (0.3 x 0.75 of the samples whose video is denoised come from these 25% of the clips).
SEAM_CLIP_SHARE = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps in this run")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder (shared by all stages)")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's saved weights and step")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--num-clips", type=int, help="world clips rendered for this stage")
    parser.add_argument("--data-seed", type=int, default=0, help="clip seeds are data_seed * 1e6 + index")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
    parser.add_argument("--height", type=int, default=config.DEMO_HEIGHT)
    parser.add_argument("--width", type=int, default=config.DEMO_WIDTH)
    parser.add_argument("--num-frames", type=int, default=config.DEMO_NUM_FRAMES)
    parser.add_argument("--frame-rate", type=float, default=config.DEMO_FRAME_RATE)
    parser.add_argument(
        "--frame-rates",
        type=float,
        nargs="+",
        help="transformer: train at these frame rates (fps), the clips split evenly between them, each batch at one "
        "(default: --frame-rate alone)",
    )
    parser.add_argument(
        "--world",
        default="original",
        choices=WORLDS,
        help="'original': balls released from rest (every run before 2026-12-07); 'rich': world.generate_training_clip "
        "(balls coming in at any moment, other generators' rhythms with impact or drum sounds, a light pulsing with a "
        "voice)",
    )
    parser.add_argument(
        "--replay-clips",
        type=int,
        default=0,
        help="transformer, with --world rich: this many more clips of the original world (balls released from rest, "
        "uncut) at --frame-rate, as their own group, drawn as often as each --frame-rates group; what every run before "
        "2026-12-07 trained on and the in-world benchmark measures, replayed so that the rich world does not erode it "
        "(default 0)",
    )
    parser.add_argument(
        "--mid-scene-fraction",
        type=float,
        help="share of the clips cut from a longer scene at a random frame (1 to num_frames - 1), so that they start "
        "with the balls in flight, bouncing or at rest, as a long run's later windows do (transformer default 0.5, "
        "other stages 0)",
    )
    parser.add_argument(
        "--continuation-fraction",
        type=float,
        help="transformer: share of the samples whose video is denoised that hold their first 1 or 2 latent frames "
        "clean (timestep 0, no loss), as a long run's later windows do; with clean audio that is audio-to-video "
        "continuation, with noised audio text-to-audio+video continuation (default 0.3)",
    )
    parser.add_argument(
        "--continuation-copy-share",
        type=float,
        help="transformer: share of the continuation samples whose held latents are what long form's default 'copy' "
        "seam hands over: a longer scene's latents, cut at a latent frame, so the first held one encodes the 8 frames "
        "before and at the window's first frame; the rest hold the clip's own first latents, the first encoding one "
        "frame, as the 'reencode' seam makes them (default 0.75; 0: all 'reencode', as before 2026-12-07)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the clips")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", default="embedded", choices=config.VARIANTS, help="'tiny' for smoke tests")
    parser.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="video_vae: train the decoder only, keeping the latent space the transformer was trained on",
    )
    parser.add_argument(
        "--impact-frame-gain",
        type=float,
        default=0.0,
        help="video_vae: loss weight 1 + gain on the frames within 2 of an impact (0: off; 4 traded T2AV sync for A2V "
        "sync in a 2026-12-01 trial, training/README.md)",
    )
    parser.add_argument(
        "--ball-row-gain",
        type=float,
        default=0.0,
        help="video_vae: add gain x the mean |ball centroid row error| (in frame heights, the row the sync detector "
        "reads; frames weighted as --impact-frame-gain weighs them) to the loss (0: off; the shipped decoder's error is "
        "0.0035-0.0057, its weighted pixel loss 0.01-0.02, so 4 weighs them alike). The shipped decoder trained with 4 "
        "(the eighth run, training/README.md)",
    )
    parser.add_argument(
        "--decoded-ball-row-gain",
        type=float,
        default=0.0,
        help="transformer: add gain x --ball-row-gain's loss on the decoded clean-video estimate x_t - sigma v of "
        f"{DECODED_BALL_ROW_CLIPS} clips a batch, each weighted by 1 - sigma, through the frozen video decoder (0: off). "
        "The shipped transformer trained with 8 (the ninth run, training/README.md)",
    )
    parser.add_argument(
        "--video-impact-gain",
        type=float,
        default=0.0,
        help="transformer: loss weight 1 + LATENT_MOTION_GAIN + gain (instead of 1 + LATENT_MOTION_GAIN) on the ball's "
        "video latent tokens in each latent frame that holds an impact (0: off). Tried at 4 in the seventh run: T2AV "
        "visual->audio fell, A2V unchanged (training/README.md)",
    )
    parser.add_argument(
        "--audio-tail-gain",
        type=float,
        default=0.0,
        help="transformer: loss weight 1 + gain on the audio latent frames of each impact's tail (after the onset "
        "frames, up to AUDIO_TAIL_SECONDS; 0: off). Tried at 2 in the sixth run: no measurable change "
        "(training/README.md)",
    )
    parser.add_argument(
        "--freeze-text-encoder",
        action="store_true",
        help="transformer: keep the text encoder fixed and encode each distinct caption once (connectors still train)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="transformer: torch.compile its repeated blocks (one graph per stage shape and cross-modal setting)",
    )
    parser.add_argument(
        "--compile-dynamic",
        action="store_true",
        help="with --compile at several --frame-rates: compile the token counts as dynamic sizes (2-4 graphs for every "
        "stage and rate) instead of one static graph per stage, rate and cross-modal setting (4 per rate); dynamo "
        "traces dynamic graphs ~4x slower (training/README.md)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="with --compile: torch.compile's backend ('aot_eager' traces the same graphs without generating code: "
        "for counting recompiles on a CPU)",
    )
    parser.add_argument(
        "--compile-cache",
        type=Path,
        help="with --compile: torch.compile's cache artifacts, loaded from this file if it exists and saved to it after "
        "compiling (a later device command then skips most of the compile)",
    )
    parser.add_argument(
        "--stop-at", type=float, help="Unix time at which to stop and save, setup included (a device command's end)"
    )
    args = parser.parse_args(argv)
    for key, value in {**STAGE_OPTION_DEFAULTS, **DEFAULTS[args.stage]}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1; got {args.steps}")
    if args.height % 64 or args.width % 64:
        parser.error(f"--height and --width must be multiples of 64 (two-stage sizes); got {args.height}x{args.width}")
    if (args.num_frames - 1) % 8:
        parser.error(f"--num-frames must be 8k+1; got {args.num_frames}")
    if args.frame_rates is None:
        args.frame_rates = [args.frame_rate]
    if args.stage != "transformer" and args.frame_rates != [args.frame_rate]:
        parser.error(f"--frame-rates is for the transformer stage; got it with --stage {args.stage}")
    if not all(0 < rate <= 60 for rate in args.frame_rates) or len(args.frame_rates) > args.num_clips:
        parser.error(f"--frame-rates must be fps in (0, 60], at most one per clip; got {args.frame_rates}")
    if args.replay_clips < 0 or (args.replay_clips and (args.stage != "transformer" or args.world != "rich")):
        parser.error(
            "--replay-clips must be >= 0, and is for the transformer stage with --world rich; got "
            f"{args.replay_clips} with --stage {args.stage} --world {args.world}"
        )
    for name in ("mid_scene_fraction", "continuation_fraction", "continuation_copy_share"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1]; got {getattr(args, name)}")
    for name in ("continuation_fraction", "continuation_copy_share"):
        if getattr(args, name) and args.stage != "transformer":
            parser.error(f"--{name.replace('_', '-')} is for the transformer stage; got it with --stage {args.stage}")
    if args.continuation_fraction and (args.num_frames - 1) // 8 < CONTINUATION_MAX_HELD_FRAMES:
        parser.error(
            f"--continuation-fraction needs more than {CONTINUATION_MAX_HELD_FRAMES} latent frames "
            f"(--num-frames >= {8 * CONTINUATION_MAX_HELD_FRAMES + 1}); got --num-frames {args.num_frames}"
        )
    if not args.impact_frame_gain >= 0:  # a negative gain could make the loss weights sum to zero or below
        parser.error(f"--impact-frame-gain must be >= 0 (0: off); got {args.impact_frame_gain}")
    for name in ("video_impact_gain", "audio_tail_gain", "ball_row_gain", "decoded_ball_row_gain"):
        if not getattr(args, name) >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0 (0: off); got {getattr(args, name)}")
    return args


# --- checkpoints ---------------------------------------------------------------------------------------------------


def load_component(key: str, out: Path, fresh: dict[str, object], device: str) -> torch.nn.Module:
    """The saved component under out/key (as float32), else the freshly initialised one."""
    folder = out / key
    if folder.exists():
        module = COMPONENT_CLASSES[key].from_pretrained(folder, torch_dtype=torch.float32)
    else:
        module = fresh[key]
    return module.to(device)


def save_components(modules: dict[str, torch.nn.Module], out: Path) -> None:
    for key, module in modules.items():
        copy.deepcopy(module).to("cpu", torch.bfloat16).save_pretrained(out / key)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record_settings(args: argparse.Namespace, out: Path, start_step: int) -> None:
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    path = out / f"{args.stage}_settings.json"
    exported = out / "training_settings.json"  # an exported folder keeps every stage's settings in one file
    runs = []
    if args.resume and path.exists():
        runs = json.loads(path.read_text())["runs"]
    elif args.resume and exported.exists():
        runs = json.loads(exported.read_text()).get("settings", {}).get(args.stage, {}).get("runs", [])
    runs.append(
        {
            "start_step": start_step,
            "git_commit": git_commit(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            **settings,
        }
    )
    record = {
        "stage": args.stage,
        "components": STAGE_COMPONENTS[args.stage],
        "component_config": {
            key: config.embedded_component_kwargs(args.variant).get(key) for key in STAGE_COMPONENTS[args.stage]
        },
        "constants": {
            "VIDEO_WINDOW_FRAMES": VIDEO_WINDOW_FRAMES,
            "MOVING_PIXEL_GAIN": MOVING_PIXEL_GAIN,
            "IMPACT_FRAME_RADIUS": IMPACT_FRAME_RADIUS,
            "KL_WEIGHT": KL_WEIGHT,
            "VOCODER_CROP_FRAMES": VOCODER_CROP_FRAMES,
            "CAPTION_DROPOUT": CAPTION_DROPOUT,
            "ISOLATED_FRACTION": ISOLATED_FRACTION,
            "TRANSFORMER_CASES": TRANSFORMER_CASES,
            "CONTINUATION_MAX_HELD_FRAMES": CONTINUATION_MAX_HELD_FRAMES,
            "SEAM_CLIP_SHARE": SEAM_CLIP_SHARE,
            "LATENT_MOTION_GAIN": LATENT_MOTION_GAIN,
            "AUDIO_ONSET_GAIN": AUDIO_ONSET_GAIN,
            "AUDIO_TAIL_SECONDS": AUDIO_TAIL_SECONDS,
            "TRAINING_CLIP_KINDS": TRAINING_CLIP_KINDS if args.world == "rich" else None,
        },
        "runs": runs,
    }
    path.write_text(json.dumps(record, indent=2, default=str))


# --- stage steps ---------------------------------------------------------------------------------------------------


def gaussian_kl(posterior) -> torch.Tensor:
    return 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()


def set_video_latent_stats(vae: AutoencoderKLLTX2Video, video: torch.Tensor) -> None:
    """Per-channel mean and std of the encoded clips: the pipeline normalises latents with them."""
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mode().float()
    vae.latents_mean.copy_(latents.mean(dim=(0, 2, 3, 4)))
    vae.latents_std.copy_(latents.std(dim=(0, 2, 3, 4)).clamp_min(1e-3))


def set_audio_latent_stats(audio_vae: AutoencoderKLLTX2Audio, mel: torch.Tensor) -> None:
    with torch.no_grad():
        latents = audio_vae.encode(mel).latent_dist.mode().float()
    packed = LTX2Pipeline._pack_audio_latents(latents)  # (B, C, L, M) -> (B, L, C*M)
    audio_vae.latents_mean.copy_(packed.mean(dim=(0, 1)))
    audio_vae.latents_std.copy_(packed.std(dim=(0, 1)).clamp_min(1e-3))


def stereo_mel(audio: torch.Tensor) -> torch.Tensor:
    """(N, samples) mono 16 kHz -> (N, 2, time, 64) log-mel, the audio VAE's input (mono duplicated)."""
    return log_mel_spectrogram(audio[:, None, :].expand(-1, 2, -1).contiguous())


def multi_resolution_stft_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1 at three resolutions (Parallel WaveGAN's auxiliary loss)."""
    loss = prediction.new_zeros(())
    for n_fft, hop in ((256, 64), (512, 128), (1024, 256)):
        window = torch.hann_window(n_fft, device=prediction.device)
        spectra = [
            torch.stft(signal.float(), n_fft, hop, window=window, return_complex=True).abs().clamp_min(1e-5)
            for signal in (prediction, target)
        ]
        # Norms over the whole batch: a silent crop would make a per-example ratio explode.
        loss = loss + torch.linalg.norm(spectra[1] - spectra[0]) / torch.linalg.norm(spectra[1]).clamp_min(1.0)
        loss = loss + (spectra[1].log() - spectra[0].log()).abs().mean()
    return loss / 3


def align_vocoder_channels(vocoder: LTX2VocoderWithBWE, mel: torch.Tensor) -> list[int]:
    """Flip the sign of every 16 kHz output channel that comes out in antiphase with channel 0 on `mel` (N, 2, time,
    bins); returns the flipped channels. Exact: the output layer is linear (no bias, no final activation, checked)
    and the bandwidth extension only sees the channels' mel magnitudes."""
    generator = vocoder.vocoder
    if generator.final_act_fn is not None or generator.conv_out.bias is not None:
        raise ValueError("align_vocoder_channels needs a linear output layer (no final activation, no bias)")
    with torch.no_grad():
        waveform = generator(mel.to(generator.conv_out.weight.device, generator.conv_out.weight.dtype)).float()
        reference = waveform[:, 0].flatten()
        flipped = [c for c in range(1, waveform.shape[1]) if torch.dot(reference, waveform[:, c].flatten()) < 0]
        for channel in flipped:
            generator.conv_out.weight[channel].neg_()
    return flipped


def gemma_prompt_embeds(
    tokenizer, text_encoder, captions: list[str], device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, tokens, width * (layers + 1)) text encoder hidden states and (N, tokens) mask of `captions`, exactly as the
    pipeline encodes a prompt (diffusers' Gemma encoding: left padding to the tokenizer's maximum length)."""
    holder = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder)
    return LTX2Pipeline._get_gemma_prompt_embeds(
        holder,
        captions,
        max_sequence_length=tokenizer.model_max_length,
        device=torch.device(device),
        dtype=torch.float32,
    )


def text_conditioning(tokenizer, text_encoder, connectors, captions: list[str], device: str):
    """Connector outputs (video text, audio text, mask) for `captions`, as the pipeline computes them."""
    return connectors(*gemma_prompt_embeds(tokenizer, text_encoder, captions, device), padding_side="left")


def impact_frame_weight(impact_frames: list[list[int]], start: int, window: int, gain: float) -> torch.Tensor:
    """(N, 1, window, 1, 1) video VAE loss weight: 1 + gain on the frames of `start ... start + window - 1` within
    IMPACT_FRAME_RADIUS of one of each clip's impacts, else 1."""
    weight = torch.ones(len(impact_frames), 1, window, 1, 1)
    for row, frames in enumerate(impact_frames):
        for frame in frames:
            low, high = (
                max(frame - IMPACT_FRAME_RADIUS - start, 0),
                min(frame + IMPACT_FRAME_RADIUS + 1 - start, window),
            )
            if low < high:
                weight[row, :, low:high] = 1.0 + gain
    return weight


def soft_ball_rows(video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A differentiable `world.detectors.ball_rows`: (N, F) centroid row of the ball, in frame heights, of `video`
    (N, 3, F, H, W) in [-1, 1], and (N, F) its soft pixel count (the detector's mask with ramped thresholds)."""
    rgb = (video.float() + 1) / 2
    value, darkest = rgb.amax(dim=1), rgb.amin(dim=1)
    saturation = (value - darkest) / value.clamp_min(1e-3)
    mask = ((saturation - BALL_MIN_SATURATION) / BALL_MASK_RAMP).clamp(0, 1) * (
        (value - BALL_MIN_VALUE) / BALL_MASK_RAMP
    ).clamp(0, 1)
    height = video.shape[-2]
    row_index = torch.arange(height, device=video.device)
    mask = mask * (row_index < math.ceil(FLOOR_LINE * height))[:, None]  # above the floor line, as the detector
    rows = (row_index.float() + 0.5) / height
    counts = mask.sum(dim=(-2, -1))
    centroid = (mask * rows[:, None]).sum(dim=(-2, -1)) / counts.clamp_min(1e-3)
    return centroid, counts


def ball_row_loss(reconstruction: torch.Tensor, video: torch.Tensor, frame_weight: torch.Tensor) -> torch.Tensor:
    """Mean |centroid row error| (frame heights) over the frames where the original shows the ball, weighted by
    `frame_weight` (N, 1, F, 1, 1)."""
    target, seen = soft_ball_rows(video)
    centroid, _ = soft_ball_rows(reconstruction)
    weight = frame_weight[:, 0, :, 0, 0].to(video.device) * (seen >= MIN_BALL_PIXELS).float()
    return (weight * (centroid - target.detach()).abs()).sum() / weight.sum().clamp_min(1.0)


def latent_motion_mask(video: torch.Tensor, geometry: tuple[int, int, int]) -> torch.Tensor:
    """(N, tokens) float: 1 where a video latent token of `geometry` (frames, height, width) covers a moving ball pixel
    of `video` (N, 3, F, H, W), else 0, in the packed token order (frame, row, column).

    Latent frame 0 holds pixel frame 0 and latent frame k frames 8k - 7 ... 8k (the VAE's causal 8x); a token covers
    its cell of the full-size frame at any stage.
    """
    moving = motion_weight(video, 1.0) - 1.0  # (N, 1, F, H, W) in {0, 1}
    frames, height, width = geometry
    stride = (moving.shape[2] - 1) // max(frames - 1, 1)
    first = moving[:, :, :1]
    rest = moving[:, :, 1:].unflatten(2, (frames - 1, stride)).amax(dim=3)
    moving = torch.cat([first, rest], dim=2)
    moving = torch.nn.functional.adaptive_max_pool3d(moving, (frames, height, width))
    return moving.flatten(1)


def latent_impact_mask(impact_frames: list[list[int]], geometry: tuple[int, int, int], stride: int) -> torch.Tensor:
    """(N, tokens) float: 1 on every video latent token of `geometry` (frames, height, width) in a latent frame that
    holds one of each clip's impact frames, else 0, in the packed token order (frame, row, column). Latent frame 0
    holds pixel frame 0 and latent frame k pixel frames stride * (k - 1) + 1 ... stride * k (the causal VAE's
    temporal compression `stride`)."""
    frames, height, width = geometry
    mask = torch.zeros(len(impact_frames), frames)
    for row, clip_frames in enumerate(impact_frames):
        for frame in clip_frames:
            latent_frame = (frame + stride - 1) // stride
            if 0 <= latent_frame < frames:
                mask[row, latent_frame] = 1.0
    return mask[:, :, None].expand(-1, -1, height * width).flatten(1)


def audio_onset_mask(impact_frames: list[list[int]], frame_rate: float, audio_frames: int) -> torch.Tensor:
    """(N, audio_frames) float: 1 on the audio latent frames of each impact's onset and the one after, else 0."""
    mask = torch.zeros(len(impact_frames), audio_frames)
    for row, frames in enumerate(impact_frames):
        for frame in frames:
            onset = int(frame / frame_rate * constants.AUDIO_LATENTS_PER_SECOND)
            mask[row, max(onset, 0) : min(onset + 2, audio_frames)] = 1.0
    return mask


def audio_tail_mask(impact_frames: list[list[int]], frame_rate: float, audio_frames: int) -> torch.Tensor:
    """(N, audio_frames) float: 1 on the audio latent frames after each impact's onset frames, up to
    AUDIO_TAIL_SECONDS after the onset, and not on any onset frame; else 0."""
    onsets = audio_onset_mask(impact_frames, frame_rate, audio_frames)
    tail = torch.zeros_like(onsets)
    tail_frames = round(AUDIO_TAIL_SECONDS * constants.AUDIO_LATENTS_PER_SECOND)
    for row, frames in enumerate(impact_frames):
        for frame in frames:
            onset = int(frame / frame_rate * constants.AUDIO_LATENTS_PER_SECOND)
            tail[row, max(onset + 2, 0) : min(onset + tail_frames + 1, audio_frames)] = 1.0
    return tail * (1.0 - onsets)


def weighted_token_mean(error: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, tokens) error, (B, tokens) weight -> (B,) weighted mean per sample (0 where every weight is 0)."""
    return (error * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-12)


class CaptionCache:
    """A frozen text encoder's output for every distinct caption, encoded once.

    Every prompt is padded to the same length, so a caption's hidden states do not depend on the batch it is encoded
    in: looking them up gives what `gemma_prompt_embeds` computes, and a training step only runs the connectors.
    """

    def __init__(self, tokenizer, text_encoder, captions: list[str], device: str):
        self.captions = sorted(set(captions) | {""})  # "" is the dropped caption (CFG's unconditional pass)
        self.index = {caption: position for position, caption in enumerate(self.captions)}
        with torch.no_grad():
            self.embeds, self.mask = gemma_prompt_embeds(tokenizer, text_encoder, self.captions, device)

    def ids(self, captions: list[str]) -> torch.Tensor:
        return torch.tensor([self.index[caption] for caption in captions], device=self.embeds.device)

    def conditioning(self, connectors, caption_ids: torch.Tensor):
        """Connector outputs (video text, audio text, mask) for the cached captions `caption_ids` (on the device)."""
        return connectors(self.embeds[caption_ids], self.mask[caption_ids], padding_side="left")


def draw_sigmas(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample noise levels of the (video, audio) tokens on [0, 1], mixing the four training cases; a clean
    stream's are 0 (its modality sigma is the other stream's: `modality_sigmas`)."""
    # Half uniform, half the exact sigmas the distilled schedules visit (they crowd near 1).
    schedule = torch.tensor(constants.DISTILLED_STAGE_1_SIGMAS[:-1] + constants.DISTILLED_STAGE_2_SIGMAS[:-1])
    uniform = torch.rand(batch, generator=generator)
    visited = schedule[torch.randint(len(schedule), (batch,), generator=generator)]
    base = torch.where(torch.rand(batch, generator=generator) < 0.5, uniform, visited)
    other = torch.rand(batch, generator=generator)
    case = torch.multinomial(torch.tensor(list(TRANSFORMER_CASES.values())), batch, True, generator=generator)
    names = list(TRANSFORMER_CASES)
    video_sigma = torch.where(case == names.index("video_clean"), torch.zeros(batch), base)
    audio_sigma = torch.where(case == names.index("audio_clean"), torch.zeros(batch), base)
    audio_sigma = torch.where(case == names.index("independent"), other, audio_sigma)
    return video_sigma, audio_sigma


def modality_sigmas(video_sigma: torch.Tensor, audio_sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each stream's modality sigma from its tokens' sigmas (B,): a stream held clean (tokens at 0) takes the other
    stream's, the step's sigma, as the reference does (ltx-pipelines' `modality_from_latent_state`: modality sigma the
    step's, per-token timesteps denoise_mask x sigma) and as the pipelines run audio-to-video. The modality sigma drives
    the stream's prompt AdaLN and the other stream's cross-modal AdaLN; its tokens' timesteps stay 0. A stream being
    denoised keeps its own sigma for both (the joint case, and each stream of the independent one)."""
    video_modality = torch.where(video_sigma > 0, video_sigma, audio_sigma)
    return video_modality, torch.where(audio_sigma > 0, audio_sigma, video_sigma)


class TransformerDraw(NamedTuple):
    """One transformer training batch's random choices, drawn on the CPU generator (no device sync)."""

    indices: torch.Tensor  # (B,) clips
    stage: int  # 1: stage-1 (half-size) latents, 2: full-size
    video_sigma: torch.Tensor  # (B,)
    audio_sigma: torch.Tensor  # (B,)
    caption_dropped: torch.Tensor  # (B,) bool: the empty prompt instead of the clip's caption
    isolate: bool  # cross-modal attention off
    group: int = 0  # the frame rate's group (`ClipGroup`) every clip of the batch is in
    held_frames: torch.Tensor | None = None  # (B,) int: leading latent video frames held clean (None: none)
    copied: torch.Tensor | None = None  # (B,) bool: held latents as "copy" hands them over (`seam_cut`); None: none


class ClipGroup(NamedTuple):
    """The training clips at one frame rate: `count` of them from `start` (a batch holds clips of one group: the
    audio latents' length follows the clip's duration)."""

    frame_rate: float
    start: int
    count: int
    seam_clips: torch.Tensor | None = None  # (S,) the group's clips with their scene's latents (`seam_cut`), if any


def draw_held_frames(video_sigma: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(B,) leading latent video frames each sample holds clean: 1 ... CONTINUATION_MAX_HELD_FRAMES for a `fraction` of
    the samples whose video is denoised (sigma > 0), else 0."""
    batch = len(video_sigma)
    held = torch.randint(1, CONTINUATION_MAX_HELD_FRAMES + 1, (batch,), generator=generator)
    chosen = (torch.rand(batch, generator=generator) < fraction) & (video_sigma > 0)
    return torch.where(chosen, held, torch.zeros_like(held))


def video_token_levels(
    video_sigma: torch.Tensor, held_frames: torch.Tensor, num_tokens: int, latent_frames: int
) -> torch.Tensor:
    """(B, tokens) noise level of each video latent token: the sample's sigma, 0 on the tokens of its first
    `held_frames` latent frames (packed order: frame, row, column), as the pipelines' denoise masks give them."""
    tokens_per_frame = num_tokens // latent_frames
    position = torch.arange(num_tokens, device=video_sigma.device)
    denoised = position[None, :] >= (held_frames.to(video_sigma.device) * tokens_per_frame)[:, None]
    return video_sigma[:, None] * denoised


def generated_frames(held_frames: torch.Tensor | None, count: int, num_frames: int) -> torch.Tensor:
    """(count, num_frames) 1 on the pixel frames the first `count` samples generate, 0 on the 8(K - 1) + 1 that their
    K held latent frames decode to (`long_form.shared_frames`)."""
    if held_frames is None:
        return torch.ones(count, num_frames)
    held = held_frames[:count]
    given = torch.where(held > 0, constants.VIDEO_TEMPORAL_COMPRESSION * (held - 1) + 1, torch.zeros_like(held))
    return (torch.arange(num_frames)[None, :] >= given[:, None]).float()


def draw_transformer_batch(
    batch: int,
    num_clips: int,
    generator: torch.Generator,
    groups: list[ClipGroup] | None = None,
    continuation_fraction: float = 0.0,
    copy_share: float = 0.0,
) -> TransformerDraw:
    """A batch's random choices; with `groups`, one group drawn uniformly and `indices` within it (`num_clips`
    unused); a `continuation_fraction` of the samples hold leading video frames clean (`draw_held_frames`), a
    `copy_share` of those (where the group has seam clips) the latents "copy" hands over, of a seam clip drawn
    uniformly from the group's in place of the sample's clip."""
    group = 0
    if groups is not None and len(groups) > 1:
        group = int(torch.randint(len(groups), (1,), generator=generator))
    start, count = (groups[group].start, groups[group].count) if groups is not None else (0, num_clips)
    indices = start + torch.randint(count, (batch,), generator=generator)
    stage = 1 if torch.rand(1, generator=generator) < 0.5 else 2
    video_sigma, audio_sigma = draw_sigmas(batch, generator)
    caption_dropped = torch.rand(batch, generator=generator) < CAPTION_DROPOUT
    isolate = bool(torch.rand(1, generator=generator) < ISOLATED_FRACTION)
    held_frames = draw_held_frames(video_sigma, continuation_fraction, generator) if continuation_fraction else None
    copied = None
    seam_clips = groups[group].seam_clips if groups is not None else None
    if held_frames is not None and copy_share and seam_clips is not None and len(seam_clips):
        copied = (held_frames > 0) & (torch.rand(batch, generator=generator) < copy_share)
        indices = torch.where(
            copied, seam_clips[torch.randint(len(seam_clips), (batch,), generator=generator)], indices
        )
    return TransformerDraw(
        indices, stage, video_sigma, audio_sigma, caption_dropped, isolate, group, held_frames, copied
    )


class StageTrainer:
    """Holds one stage's models, data and step function."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = args.device
        self.generator = torch.Generator().manual_seed(args.seed)
        fresh = config.build_components(seed=args.seed, variant=args.variant)
        self.fresh = fresh
        self.trainable = {
            key: load_component(key, args.out, fresh, self.device) if args.resume else fresh[key].to(self.device)
            for key in STAGE_COMPONENTS[args.stage]
        }
        for module in self.trainable.values():
            module.train()
        first_seed = args.data_seed * 1_000_000
        video_size = (args.height, args.width) if args.stage in ("video_vae", "upsampler", "transformer") else (32, 32)
        started = time.time()
        self.groups, batches = [], []
        # Seam clips (for "copy" continuation samples) only where such samples are drawn.
        seam_share = SEAM_CLIP_SHARE if args.continuation_fraction and args.continuation_copy_share else 0.0
        # Each group: its frame rate, world, mid-scene fraction, seam share and clip count. The clips split evenly
        # between the frame rates; replayed original-world clips (`--replay-clips`) follow as a group of their own.
        plans = [
            (
                rate,
                args.world,
                args.mid_scene_fraction,
                seam_share,
                (index + 1) * args.num_clips // len(args.frame_rates)
                - index * args.num_clips // len(args.frame_rates),
            )
            for index, rate in enumerate(args.frame_rates)
        ]
        if args.replay_clips:
            plans.append((args.frame_rate, "original", 0.0, 0.0, args.replay_clips))
        start = 0
        for rate, world, mid_scene_fraction, group_seam_share, count in plans:
            seeds = range(first_seed + start, first_seed + start + count)
            batch = render_clips(
                seeds,
                *video_size,
                args.num_frames,
                rate,
                args.workers,
                world,
                mid_scene_fraction,
                group_seam_share,
            )
            seams = [start + i for i, context in enumerate(batch.context_frames) if context is not None]
            batches.append(batch)
            self.groups.append(ClipGroup(rate, start, count, torch.tensor(seams, dtype=torch.long)))
            start += count
        self.num_clips = start  # the replayed clips included (`args.num_clips` stays as given: it is recorded)
        # Frames share one shape at every frame rate; audio is as long as its clip, so it stays per group.
        self.group_audio = [batch.audio for batch in batches]
        self.data = ClipBatch(
            frames=batches[0].frames if len(batches) == 1 else torch.cat([batch.frames for batch in batches]),
            audio=batches[0].audio,
            captions=[caption for batch in batches for caption in batch.captions],
            impact_frames=[frames for batch in batches for frames in batch.impact_frames],
            start_frames=[start for batch in batches for start in batch.start_frames],
            context_frames=[context for batch in batches for context in batch.context_frames],
            scene_audio=[audio for batch in batches for audio in batch.scene_audio],
        )
        del batches
        mid_scene = sum(start > 0 for start in self.data.start_frames)
        seam_count = sum(len(group.seam_clips) for group in self.groups)
        print(
            f"rendered {self.num_clips} clips ({args.world} world, {mid_scene} from mid-scene, {seam_count} of them "
            f"seam clips; {args.replay_clips} of the original world replayed at {args.frame_rate} fps) at "
            f"{video_size}, {args.frame_rates} fps in {time.time() - started:.1f} s",
            flush=True,
        )
        getattr(self, f"setup_{args.stage}")()

    def pick(self, count: int) -> torch.Tensor:
        return torch.randint(self.num_clips, (count,), generator=self.generator)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda"))

    # video VAE
    def setup_video_vae(self) -> None:
        self.vae = self.trainable["vae"]
        if self.args.freeze_encoder:
            self.vae.encoder.requires_grad_(False)

    def step_video_vae(self) -> torch.Tensor:
        indices = self.pick(self.args.batch_size)
        window = min(VIDEO_WINDOW_FRAMES, self.args.num_frames)
        start = int(torch.randint(self.args.num_frames - window + 1, (1,), generator=self.generator))
        video = frames_to_video(self.data.frames[indices, start : start + window]).to(self.device)
        # Stage 1 decodes half-size clips too (reflection padding needs >= 2 latent cells: 64 px and up).
        if video.shape[-2] >= 128 and torch.rand(1, generator=self.generator) < 0.3:
            video = downsample_video(video, 2)
        with self.autocast():
            posterior = self.vae.encode(video).latent_dist
            reconstruction = self.vae.decode(posterior.sample()).sample
        weight = motion_weight(video, MOVING_PIXEL_GAIN)
        frame_weight = torch.ones(len(indices), 1, window, 1, 1)
        if self.args.impact_frame_gain:
            impacts = [self.data.impact_frames[i] for i in indices.tolist()]
            frame_weight = impact_frame_weight(impacts, start, window, self.args.impact_frame_gain)
            weight = weight * frame_weight.to(video.device)
        loss = (weight * (reconstruction.float() - video).abs()).mean() / weight.mean()
        if self.args.ball_row_gain:
            loss = loss + self.args.ball_row_gain * ball_row_loss(reconstruction, video, frame_weight)
        return loss + KL_WEIGHT * gaussian_kl(posterior)

    def finish_video_vae(self) -> None:
        if self.args.freeze_encoder:
            return  # same encoder, same latent statistics
        self.vae.eval()
        set_video_latent_stats(self.vae, frames_to_video(self.data.frames[:16]).to(self.device))
        self.vae.train()

    # audio VAE
    def setup_audio_vae(self) -> None:
        self.audio_vae = self.trainable["audio_vae"]
        self.mel = stereo_mel(self.data.audio).to(self.device)

    def step_audio_vae(self) -> torch.Tensor:
        mel = self.mel[self.pick(self.args.batch_size)]
        with self.autocast():
            posterior = self.audio_vae.encode(mel).latent_dist
            reconstruction = self.audio_vae.decode(posterior.sample()).sample.float()
        length = min(reconstruction.shape[2], mel.shape[2])
        return (reconstruction[:, :, :length] - mel[:, :, :length]).abs().mean() + KL_WEIGHT * gaussian_kl(posterior)

    def finish_audio_vae(self) -> None:
        self.audio_vae.eval()
        set_audio_latent_stats(self.audio_vae, self.mel[:64])
        self.audio_vae.train()

    # vocoder (the 16 kHz generator; the BWE residual stays at zero)
    def setup_vocoder(self) -> None:
        self.vocoder = self.trainable["vocoder"]
        self.vocoder.bwe_generator.requires_grad_(False)
        self.mel = stereo_mel(self.data.audio).to(self.device)
        self.audio = self.data.audio.to(self.device)

    def step_vocoder(self) -> torch.Tensor:
        indices = self.pick(self.args.batch_size)
        crop = min(VOCODER_CROP_FRAMES, self.audio.shape[1] // constants.MEL_HOP_LENGTH - 1)
        starts = torch.randint(
            self.audio.shape[1] // constants.MEL_HOP_LENGTH - crop, (len(indices),), generator=self.generator
        )
        mel = torch.stack([self.mel[i, :, s : s + crop] for i, s in zip(indices, starts, strict=True)])
        hop = constants.MEL_HOP_LENGTH
        target = torch.stack([self.audio[i, s * hop : (s + crop) * hop] for i, s in zip(indices, starts, strict=True)])
        with self.autocast():
            waveform = self.vocoder.vocoder(mel).float()  # (B, 2, samples)
        waveform = waveform[..., : target.shape[-1]]
        prediction = waveform.flatten(0, 1)
        reference = target[:, None].expand(-1, 2, -1).flatten(0, 1)
        mel_loss = (
            (log_mel_spectrogram(waveform) - log_mel_spectrogram(target[:, None].expand(-1, 2, -1))).abs().mean()
        )
        # The magnitude losses cannot see a channel's sign: the downmix's loss ties the channels in phase (a vocoder
        # trained without it put them in antiphase, and its mono downmix cancelled).
        downmix_loss = multi_resolution_stft_loss(waveform.mean(dim=1), target)
        return multi_resolution_stft_loss(prediction, reference) + 0.5 * mel_loss + downmix_loss

    def finish_vocoder(self) -> None:
        align_vocoder_channels(self.vocoder, self.mel[:4])

    # latent upsampler
    def setup_upsampler(self) -> None:
        self.upsampler = self.trainable["latent_upsampler"]
        vae = load_component("vae", self.args.out, self.fresh, self.device).eval()
        self.latent_std = vae.latents_std.view(1, -1, 1, 1, 1).to(self.device)
        self.low, self.high = [], []
        with torch.no_grad():
            for chunk in torch.split(torch.arange(self.num_clips), 16):
                video = frames_to_video(self.data.frames[chunk]).to(self.device)
                self.high.append(vae.encode(video).latent_dist.mode().float())
                self.low.append(vae.encode(downsample_video(video, 2)).latent_dist.mode().float())
        self.low, self.high = torch.cat(self.low), torch.cat(self.high)

    def step_upsampler(self) -> torch.Tensor:
        indices = self.pick(self.args.batch_size).to(self.device)
        with self.autocast():
            prediction = self.upsampler(self.low[indices]).float()
        return ((prediction - self.high[indices]) / self.latent_std).pow(2).mean()

    # transformer, connectors and text encoder
    def setup_transformer(self) -> None:
        self.transformer = self.trainable["transformer"]
        self.connectors = self.trainable["connectors"]
        self.text_encoder = self.trainable["text_encoder"]
        self.tokenizer = self.fresh["tokenizer"]
        self.caption_cache = None
        vae = load_component("vae", self.args.out, self.fresh, self.device).eval().requires_grad_(False)
        self.frozen_vae = vae if self.args.decoded_ball_row_gain else None  # decodes for the ball-row loss
        audio_vae = load_component("audio_vae", self.args.out, self.fresh, self.device).eval()
        video_mean, video_std = vae.latents_mean.to(self.device), vae.latents_std.to(self.device)
        self.video_latents = {1: [], 2: []}  # stage -> packed, normalised (N, tokens, C)
        self.video_weights = {1: [], 2: []}  # stage -> (N, tokens) loss weight
        self.geometry: dict[int, tuple[int, int, int]] = {}  # stage -> latent (frames, height, width)
        started = time.time()
        with torch.no_grad():
            for chunk in torch.split(torch.arange(self.num_clips), 32):
                # uint8 to the device, then to float there: a quarter of the copy, and no CPU-bound conversion
                video = frames_to_video(self.data.frames[chunk].to(self.device))
                for stage, factor in ((1, 2), (2, 1)):
                    latents = vae.encode(downsample_video(video, factor)).latent_dist.mode().float()
                    latents = LTX2Pipeline._normalize_latents(latents, video_mean, video_std)
                    self.video_latents[stage].append(LTX2Pipeline._pack_latents(latents).cpu())
                    self.geometry[stage] = tuple(latents.shape[2:])
                    moving = latent_motion_mask(video, self.geometry[stage])
                    clip_impacts = [self.data.impact_frames[i] for i in chunk.tolist()]
                    stride = vae.config.temporal_compression_ratio
                    impacts = latent_impact_mask(clip_impacts, self.geometry[stage], stride)
                    gain = LATENT_MOTION_GAIN + self.args.video_impact_gain * impacts.to(self.device)
                    self.video_weights[stage].append((1.0 + gain * moving).cpu())
        self.video_latents = {stage: torch.cat(chunks).to(self.device) for stage, chunks in self.video_latents.items()}
        self.video_weights = {stage: torch.cat(chunks).to(self.device) for stage, chunks in self.video_weights.items()}
        # Audio latents and their loss weights per frame-rate group (their length is the clip's duration); a batch
        # indexes them with its clips' positions inside the group.
        self.audio_latents, self.audio_weights, onset_share, tail_share = [], [], [], []
        for group, audio in zip(self.groups, self.group_audio, strict=True):
            audio_frames = round(self.args.num_frames / group.frame_rate * constants.AUDIO_LATENTS_PER_SECOND)
            chunks = []
            with torch.no_grad():
                for chunk in torch.split(torch.arange(group.count), 32):
                    mel = stereo_mel(audio[chunk]).to(self.device)
                    latents = audio_vae.encode(mel).latent_dist.mode().float()[:, :, :audio_frames]
                    packed = LTX2Pipeline._pack_audio_latents(latents)
                    chunks.append(
                        LTX2Pipeline._normalize_audio_latents(
                            packed, audio_vae.latents_mean, audio_vae.latents_std
                        ).cpu()
                    )
            self.audio_latents.append(torch.cat(chunks).to(self.device))
            impacts = self.data.impact_frames[group.start : group.start + group.count]
            onsets = audio_onset_mask(impacts, group.frame_rate, audio_frames)
            tails = audio_tail_mask(impacts, group.frame_rate, audio_frames)
            self.audio_weights.append(
                (1.0 + AUDIO_ONSET_GAIN * onsets + self.args.audio_tail_gain * tails).to(self.device)
            )
            onset_share.append(float(onsets.mean()))
            tail_share.append(float(tails.mean()))
        self.encode_seam_latents(vae, audio_vae)
        onsets, tails = sum(onset_share) / len(onset_share), sum(tail_share) / len(tail_share)
        covered = {stage: float((weights > 1).float().mean()) for stage, weights in self.video_weights.items()}
        tail_text = f", tail frames {tails:.1%}" if self.args.audio_tail_gain else ""
        print(
            f"loss weights: ball tokens {covered[1]:.1%} (stage 1) / {covered[2]:.1%} (stage 2), "
            f"onset frames {onsets:.1%}{tail_text}",
            flush=True,
        )
        audio_shapes = ", ".join(str(tuple(latents.shape)) for latents in self.audio_latents)
        seam_shapes = "none"
        if self.seam_video_latents is not None:
            seam_shapes = f"{tuple(self.seam_video_latents[1].shape)} / {tuple(self.seam_video_latents[2].shape)}"
        print(
            f"latents: stage 1 {tuple(self.video_latents[1].shape)}, stage 2 {tuple(self.video_latents[2].shape)}, "
            f"audio {audio_shapes}, seam clips' scene latents {seam_shapes}; encoded in {time.time() - started:.1f} s",
            flush=True,
        )
        # RoPE coordinates per stage and frame rate, as the transformer would prepare them each step (their small
        # host-to-device copies would make every step wait for the previous one to finish on the GPU).
        batch = self.args.batch_size
        self.coords = {
            (stage, index): (
                self.transformer.rope.prepare_video_coords(
                    batch, *self.geometry[stage], self.device, fps=group.frame_rate
                ),
                self.transformer.audio_rope.prepare_audio_coords(batch, latents.shape[1], self.device),
            )
            for stage in (1, 2)
            for index, (group, latents) in enumerate(zip(self.groups, self.audio_latents, strict=True))
        }
        if self.args.freeze_text_encoder:
            self.text_encoder.requires_grad_(False).eval()
            with self.autocast():  # the numerics the per-step encoding had
                self.caption_cache = CaptionCache(self.tokenizer, self.text_encoder, self.data.captions, self.device)
            self.clip_caption_ids = self.caption_cache.ids(self.data.captions)
            print(f"text encoder frozen: {len(self.caption_cache.captions)} distinct captions cached", flush=True)
        if self.args.compile:
            self.compile_transformer()

    def encode_seam_latents(self, vae: AutoencoderKLLTX2Video, audio_vae: AutoencoderKLLTX2Audio) -> None:
        """The seam clips' latents as long form's "copy" seam hands a window its held ones (`seam_cut`): each scene
        encoded from its start (its frames before the clip, then the clip's) and cut at the clip's first latent frame,
        so the held latents are 8-frame latents from mid-scene encoded with the context before them, as a window's
        latents follow the window before's. Video at both stages goes to `seam_video_latents` (a row per seam clip;
        `seam_row` maps a clip to its row); the scene's audio latents from the clip's start (long form's audio grid:
        the nearest latent to its first frame, which `seam_start_step` puts on it) go to `scene_audio_latents` (each
        group's `audio_latents` with the seam clips' rows replaced). The clip's frames, impacts and loss weights are
        the cut's."""
        self.seam_video_latents = self.seam_row = self.scene_audio_latents = None
        seam_clips = [clip for group in self.groups for clip in group.seam_clips.tolist()]
        if not seam_clips:
            return
        self.seam_row = torch.zeros(self.num_clips, dtype=torch.long)
        self.seam_row[seam_clips] = torch.arange(len(seam_clips))
        video_mean, video_std = vae.latents_mean.to(self.device), vae.latents_std.to(self.device)
        rows: dict[int, list[torch.Tensor | None]] = {1: [None] * len(seam_clips), 2: [None] * len(seam_clips)}
        by_scene_length: dict[tuple[int, int], list[int]] = {}  # (group, start) -> clips: scenes of one length
        for index, group in enumerate(self.groups):
            for clip in group.seam_clips.tolist():
                by_scene_length.setdefault((index, self.data.start_frames[clip]), []).append(clip)
        self.scene_audio_latents = [latents.clone() for latents in self.audio_latents]
        with torch.no_grad():
            for (index, start), clips in sorted(by_scene_length.items()):
                group = self.groups[index]
                cut = seam_cut(start, group.frame_rate)
                for chunk in (clips[i : i + SEAM_ENCODE_BATCH] for i in range(0, len(clips), SEAM_ENCODE_BATCH)):
                    scenes = np.stack(
                        [np.concatenate([self.data.context_frames[c], self.data.frames[c].numpy()]) for c in chunk]
                    )
                    video = frames_to_video(torch.from_numpy(scenes).to(self.device))
                    for stage, factor in ((1, 2), (2, 1)):
                        latents = vae.encode(downsample_video(video, factor)).latent_dist.mode().float()
                        latents = latents[:, :, cut.latent_start : cut.latent_start + self.geometry[stage][0]]
                        latents = LTX2Pipeline._normalize_latents(latents, video_mean, video_std)
                        for clip, packed in zip(chunk, LTX2Pipeline._pack_latents(latents).cpu(), strict=True):
                            rows[stage][int(self.seam_row[clip])] = packed
                    audio = torch.from_numpy(np.stack([self.data.scene_audio[c] for c in chunk]))
                    latents = audio_vae.encode(stereo_mel(audio).to(self.device)).latent_dist.mode().float()
                    count = self.audio_latents[index].shape[1]
                    latents = latents[:, :, cut.audio_start : cut.audio_start + count]
                    if latents.shape[2] != count:  # the scene is rendered a frame past the clip: never short
                        raise RuntimeError(f"a seam clip's scene has {latents.shape[2]} audio latents from the cut")
                    packed = LTX2Pipeline._pack_audio_latents(latents)
                    packed = LTX2Pipeline._normalize_audio_latents(
                        packed, audio_vae.latents_mean, audio_vae.latents_std
                    )
                    positions = torch.tensor(chunk) - group.start
                    self.scene_audio_latents[index][positions.to(self.device)] = packed.to(self.device)
        self.seam_video_latents = {
            stage: torch.stack(stage_rows).to(self.device) for stage, stage_rows in rows.items()
        }
        self.seam_row = self.seam_row.to(self.device)
        self.data.context_frames = self.data.scene_audio = None  # encoded: up to as much memory as the clips again

    def step_transformer(self) -> torch.Tensor:
        return self.transformer_loss(
            draw_transformer_batch(
                self.args.batch_size,
                self.num_clips,
                self.generator,
                self.groups,
                self.args.continuation_fraction,
                self.args.continuation_copy_share,
            )
        )

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU draw on the device without waiting for the queued GPU work (a pageable copy would)."""
        if not self.device.startswith("cuda"):
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def transformer_loss(self, draw: TransformerDraw) -> torch.Tensor:
        indices = self.to_device(draw.indices)
        video_clean = self.video_latents[draw.stage][indices]
        audio_indices = indices - self.groups[draw.group].start  # positions inside the group's audio
        audio_clean = self.audio_latents[draw.group][audio_indices]
        video_sigma, audio_sigma = self.to_device(draw.video_sigma), self.to_device(draw.audio_sigma)
        if draw.copied is not None and self.seam_video_latents is not None:  # "copy": the scene's latents from the cut
            copied = self.to_device(draw.copied)
            seam = self.seam_video_latents[draw.stage][self.seam_row[indices]]
            video_clean = torch.where(copied[:, None, None], seam, video_clean)
            # Audio generated (text to audio+video continuation): the scene's audio latents on its grid, as long form
            # generates a window's. Audio held clean (audio to video): the window's slice encoded alone (the clip's
            # own, cut at the same instant), as long form's audio to video encodes a window's sound.
            scene_audio = self.scene_audio_latents[draw.group][audio_indices]
            audio_clean = torch.where((copied & (audio_sigma > 0))[:, None, None], scene_audio, audio_clean)
        held_frames = torch.zeros_like(draw.indices) if draw.held_frames is None else draw.held_frames
        # Per-token video levels, always (B, tokens) so every case runs the same graph: 0 on held tokens.
        video_levels = video_token_levels(
            video_sigma, self.to_device(held_frames), video_clean.shape[1], self.geometry[draw.stage][0]
        )
        video_noise, audio_noise = torch.randn_like(video_clean), torch.randn_like(audio_clean)
        # Flow matching (the pipeline's sampler): x_t = (1 - sigma) x0 + sigma noise, velocity = noise - x0.
        video_noisy = (1 - video_levels[:, :, None]) * video_clean + video_levels[:, :, None] * video_noise
        audio_noisy = (1 - audio_sigma[:, None, None]) * audio_clean + audio_sigma[:, None, None] * audio_noise
        video_coords, audio_coords = self.coords[(draw.stage, draw.group)]
        scale = self.transformer.config.timestep_scale_multiplier
        video_modality_sigma, audio_modality_sigma = modality_sigmas(video_sigma, audio_sigma)
        with self.autocast():
            if self.caption_cache is not None:
                caption_ids = torch.where(
                    self.to_device(draw.caption_dropped), self.caption_cache.index[""], self.clip_caption_ids[indices]
                )
                video_text, audio_text, mask = self.caption_cache.conditioning(self.connectors, caption_ids)
            else:
                captions = [
                    "" if dropped else self.data.captions[i]
                    for i, dropped in zip(draw.indices.tolist(), draw.caption_dropped.tolist(), strict=True)
                ]
                video_text, audio_text, mask = text_conditioning(
                    self.tokenizer, self.text_encoder, self.connectors, captions, self.device
                )
            video_velocity, audio_velocity = self.transformer(
                hidden_states=video_noisy,
                audio_hidden_states=audio_noisy,
                encoder_hidden_states=video_text,
                audio_encoder_hidden_states=audio_text,
                timestep=video_levels * scale,
                audio_timestep=audio_sigma * scale,
                sigma=video_modality_sigma * scale,
                audio_sigma=audio_modality_sigma * scale,
                encoder_attention_mask=mask,
                audio_encoder_attention_mask=mask,
                video_coords=video_coords,
                audio_coords=audio_coords,
                isolate_modalities=draw.isolate,
                use_cross_timestep=True,
                return_dict=False,
            )
        # Held tokens are conditioning, not targets: their weight is 0.
        video_error = weighted_token_mean(
            (video_velocity.float() - (video_noise - video_clean)).pow(2).mean(dim=2),
            self.video_weights[draw.stage][indices] * (video_levels > 0),
        )
        audio_error = weighted_token_mean(
            (audio_velocity.float() - (audio_noise - audio_clean)).pow(2).mean(dim=2),
            self.audio_weights[draw.group][audio_indices],
        )
        # A clean stream is conditioning, not a target.
        video_loss = (video_error * (video_sigma > 0)).sum() / (video_sigma > 0).sum().clamp_min(1)
        audio_loss = (audio_error * (audio_sigma > 0)).sum() / (audio_sigma > 0).sum().clamp_min(1)
        loss = video_loss + audio_loss
        if self.args.decoded_ball_row_gain:
            estimate = video_noisy - video_levels[:, :, None] * video_velocity.float()  # x0, as the sampler's step
            loss = loss + self.args.decoded_ball_row_gain * self.decoded_ball_row_loss(draw, estimate, video_sigma)
        return loss

    def decoded_ball_row_loss(
        self, draw: TransformerDraw, estimate: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        """`ball_row_loss` of the first DECODED_BALL_ROW_CLIPS clips' clean-video estimates (packed, normalised),
        decoded at the stage's size, against their clips; each clip weighted by 1 - sigma (a clean one by 0: nothing to
        learn there), less the frames its held latents decode to (`held_frames`: 8(K - 1) + 1 for K held), which are
        given, not generated (long form writes them from the window before), and under "copy" start with a latent the
        decoder reads as one frame that encodes eight."""
        count = min(DECODED_BALL_ROW_CLIPS, len(draw.indices))
        frames, height, width = self.geometry[draw.stage]
        config = self.transformer.config
        latents = LTX2Pipeline._unpack_latents(
            estimate[:count], frames, height, width, config.patch_size, config.patch_size_t
        )
        latents = LTX2Pipeline._denormalize_latents(latents, self.frozen_vae.latents_mean, self.frozen_vae.latents_std)
        with self.autocast():
            decoded = self.frozen_vae.decode(latents, return_dict=False)[0]
        video = frames_to_video(self.to_device(self.data.frames[draw.indices[:count]]))
        video = downsample_video(video, 2) if draw.stage == 1 else video
        clip_weight = (1 - sigma[:count]) * (sigma[:count] > 0)
        frame_weight = clip_weight[:, None] * generated_frames(draw.held_frames, count, video.shape[2]).to(
            sigma.device
        )
        return ball_row_loss(decoded, video, frame_weight[:, None, :, None, None])

    def compile_transformer(self) -> None:
        """Compile the transformer's repeated blocks and trace every graph training needs (two stage shapes, cross-modal
        attention on and off, each frame rate's audio length) before the clock starts; if compiling fails, train
        uncompiled (slower, not wrong).

        Each shape is a static graph of its own: 4 per frame rate (batches are bucketed by rate, so no other shape
        ever comes). With --compile-dynamic the token counts are dynamic sizes instead: one graph for cross-modal
        attention on and one for off whatever the stage and rate (2-4 in all), at ~4x dynamo's tracing time."""
        started = time.time()
        cache = self.args.compile_cache
        if cache is not None and cache.is_file():
            if torch.compiler.load_cache_artifacts(cache.read_bytes()) is None:  # torch logs why
                print(f"compile cache {cache} could not be read; compiling from scratch", flush=True)
            else:
                print(f"loaded compile cache artifacts from {cache}", flush=True)
        dynamic = self.args.compile_dynamic and len(self.groups) > 1
        self.transformer.compile_repeated_blocks(dynamic=dynamic, backend=self.args.compile_backend)
        generator = torch.Generator().manual_seed(self.args.seed + 1)  # leaves the training draws untouched
        graphs_before = compiled_graph_count()
        try:
            for stage in (1, 2):
                for isolate in (False, True):
                    for group in range(len(self.groups)):  # each frame rate's audio length
                        draw = draw_transformer_batch(
                            self.args.batch_size,
                            self.num_clips,
                            generator,
                            [self.groups[group]],
                            self.args.continuation_fraction,
                            self.args.continuation_copy_share,
                        )
                        self.transformer_loss(draw._replace(stage=stage, isolate=isolate, group=group)).backward()
        except Exception as error:  # inductor or triton failing on this machine
            print(
                f"compiling failed after {time.time() - started:.1f} s ({type(error).__name__}: {error})", flush=True
            )
            print("training the transformer uncompiled", flush=True)
            torch._dynamo.reset()
            eager = LTX2VideoTransformer3DModel.from_config(self.transformer.config)
            eager.load_state_dict(self.transformer.state_dict())
            self.transformer = self.trainable["transformer"] = eager.to(self.device).train()
        else:
            # A graph nobody traced above (or one failing later) then runs eagerly instead of ending the run.
            torch._dynamo.config.suppress_errors = True
            shapes = "dynamic" if dynamic else "static"
            print(
                f"compiled and traced the transformer's blocks in {time.time() - started:.1f} s: "
                f"{compiled_graph_count() - graphs_before} graphs ({shapes} shapes)",
                flush=True,
            )
            saved = torch.compiler.save_cache_artifacts() if cache is not None else None
            if saved is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_bytes(saved[0])
                print(f"saved compile cache artifacts to {cache} ({len(saved[0]) / 2**20:.1f} MiB)", flush=True)
        for module in self.trainable.values():
            module.zero_grad(set_to_none=True)

    def finish(self) -> None:
        finish = getattr(self, f"finish_{self.args.stage}", None)
        if finish is not None:
            finish()


def compiled_graph_count() -> int:
    """Graphs torch.compile has made in this process so far (dynamo's count; a recompile is one more)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def initial_state(args: argparse.Namespace) -> dict:
    """The stage's step count and loss log to continue from: its own state file, else (resuming from an exported
    folder, which keeps only `training_settings.json`) the exported step count with an empty log, else step 0."""
    state_path = args.out / f"{args.stage}_state.json"
    exported = args.out / "training_settings.json"
    if args.resume and state_path.exists():
        return json.loads(state_path.read_text())
    if args.resume and exported.exists():
        step = json.loads(exported.read_text()).get("steps", {}).get(args.stage, 0)
        print(f"{args.stage}: no {state_path.name}; continuing the exported model's step count {step}", flush=True)
        return {"step": step, "log": []}
    return {"step": 0, "log": []}


def time_budget_s(args: argparse.Namespace) -> float | None:
    """Seconds the optimizer loop may run from now: `--max-minutes`, cut to what is left before `--stop-at`."""
    limits = []
    if args.max_minutes is not None:
        limits.append(args.max_minutes * 60)
    if args.stop_at is not None:
        limits.append(max(args.stop_at - time.time(), 0.0))
    return min(limits) if limits else None


def train(args: argparse.Namespace) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    state_path = args.out / f"{args.stage}_state.json"
    state = initial_state(args)
    record_settings(args, args.out, state["step"])
    torch.manual_seed(args.seed + state["step"])
    trainer = StageTrainer(args)
    parameters = [p for module in trainer.trainable.values() for p in module.parameters() if p.requires_grad]
    # The fused kernel is one launch per step instead of several per parameter tensor; the same AdamW update.
    fused = args.device.startswith("cuda")
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99), fused=fused)
    warmup = 100 if state["step"] == 0 else 10
    total = args.steps
    budget_s = time_budget_s(args)
    started = time.time()

    def save() -> None:
        trainer.finish()
        save_components(trainer.trainable, args.out)
        state_path.write_text(json.dumps(state, indent=1))

    for step in range(1, total + 1):
        # Linear warm-up, then cosine decay to 10% over this run (its steps or its time limit, whichever is nearer).
        progress = step / total
        if budget_s is not None:
            progress = max(progress, (time.time() - started) / max(budget_s, 1e-6))
        progress = min(progress, 1.0)
        factor = min(step / warmup, 1.0) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * factor
        loss = getattr(trainer, f"step_{args.stage}")()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        state["step"] += 1
        out_of_time = budget_s is not None and time.time() - started > budget_s
        if step % args.log_every == 0 or step == total or out_of_time:
            elapsed = time.time() - started
            entry = {"step": state["step"], "loss": round(float(loss.item()), 5), "elapsed_s": round(elapsed, 1)}
            state["log"].append(entry)
            print(f"{args.stage} {entry}", flush=True)
        if step % args.save_every == 0:
            save()
        if out_of_time:
            print(f"{args.stage}: stopping at step {state['step']} (time limit)", flush=True)
            break
    save()
    if getattr(args, "compile", False):  # a recompile during training would show here as more than the traced ones
        print(f"{args.stage}: {compiled_graph_count()} graphs compiled in all", flush=True)
    return state


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
