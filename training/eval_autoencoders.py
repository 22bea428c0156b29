"""Held-out world clips through the trained autoencoders alone (no transformer): what survives encode + decode.

    python -m training.eval_autoencoders --ckpt DIR [--video-clips 4] [--audio-clips 8]

Video: PSNR, the ball's centroid error, the share of impacts the detector still sees within 2 frames (overall and by
impact speed: a slow impact starts a hop shorter than one latent frame), and the share of the impacts it sees that are
real (within 2 frames of one).
Audio: the share of impacts heard within 2 frames through the audio VAE and vocoder, and the material and room
the detectors recognise. Run it before training the transformer on an autoencoder's latents.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video
from diffusers.pipelines.ltx2 import LTX2VocoderWithBWE

from training.data import frames_to_video
from training.train import stereo_mel
from world import detectors, generate_clip

HELD_OUT_SEED = 900_000
FRAME_RATE = 24.0
TOLERANCE_S = 2 / FRAME_RATE


def evaluate_video(folder: Path, num_clips: int) -> dict[str, float]:
    vae = AutoencoderKLLTX2Video.from_pretrained(folder, torch_dtype=torch.float32).eval()
    real = detected = 0
    psnrs, centroid_errors, speeds, hits = [], [], [], []
    for index in range(num_clips):
        clip = generate_clip(HELD_OUT_SEED + index)
        with torch.no_grad():
            latents = vae.encode(frames_to_video(torch.from_numpy(clip.frames[None]))).latent_dist.mode()
            decoded = vae.decode(latents).sample
        # (1, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8
        frames = ((decoded[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
        psnrs.append(10 * np.log10(255**2 / ((frames.astype(float) - clip.frames) ** 2).mean()))
        truth = np.array([impact.time for impact in clip.impacts])
        shown = detectors.visual_impacts(frames, FRAME_RATE)
        errors, _ = detectors.match_events(truth, shown, TOLERANCE_S)
        speeds.extend(impact.speed for impact in clip.impacts)
        hits.extend(bool(error <= TOLERANCE_S + 1e-9) for error in errors)
        real += detectors.match_events(shown, truth, TOLERANCE_S)[1]
        detected += len(shown)
        error = np.abs(detectors.ball_rows(clip.frames) - detectors.ball_rows(frames))
        centroid_errors.extend(error[np.isfinite(error)].tolist())
    nan = float("nan")
    return {
        "video PSNR (dB)": float(np.mean(psnrs)),
        "ball centroid error, median (px)": float(np.median(centroid_errors)) if centroid_errors else float("inf"),
        "impacts seen within 2 frames": sum(hits) / len(hits),
        **{
            f"impacts seen within 2 frames, speed {low:g}-{high:g} ({count} impacts)": (
                seen_in_band / count if count else nan
            )
            for low, high, count, seen_in_band in detectors.hits_by_speed(speeds, hits)
        },
        # the other way round: a decoder that draws bounces the latents do not hold would show up here
        "impacts shown that are real (within 2 frames)": real / detected if detected else nan,
    }


def evaluate_audio(audio_folder: Path, vocoder_folder: Path, num_clips: int) -> dict[str, float]:
    audio_vae = AutoencoderKLLTX2Audio.from_pretrained(audio_folder, torch_dtype=torch.float32).eval()
    vocoder = LTX2VocoderWithBWE.from_pretrained(vocoder_folder, torch_dtype=torch.float32).eval()
    heard = total = materials = rooms = 0
    for index in range(num_clips):
        clip = generate_clip(HELD_OUT_SEED + index, 32, 32)
        mel = stereo_mel(torch.from_numpy(clip.audio[None]))
        with torch.no_grad():
            waveform = vocoder(audio_vae.decode(audio_vae.encode(mel).latent_dist.mode()).sample)[0].mean(0).numpy()
        rate = vocoder.config.output_sampling_rate
        truth = np.array([impact.time for impact in clip.impacts])
        heard += detectors.match_events(truth, detectors.audio_onsets(waveform, rate), TOLERANCE_S)[1]
        total += len(truth)
        sound = detectors.classify_sound(waveform, rate)
        materials += sound is not None and sound[0] == clip.scene.material
        rooms += sound is not None and sound[1] == clip.scene.room
    return {
        "impacts heard within 2 frames": heard / total,
        "material recognised": materials / num_clips,
        "room recognised": rooms / num_clips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="a training folder or the exported model folder")
    parser.add_argument("--video-clips", type=int, default=4)
    parser.add_argument("--audio-clips", type=int, default=8)
    args = parser.parse_args()
    for name in ("video_clips", "audio_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if not (args.ckpt / "vae").is_dir():
        parser.error(
            f"--ckpt must be a folder with a vae/ component (a training folder or an exported model); got {args.ckpt}"
        )
    torch.set_num_threads(2)
    results = {
        **evaluate_video(args.ckpt / "vae", args.video_clips),
        **evaluate_audio(args.ckpt / "audio_vae", args.ckpt / "vocoder", args.audio_clips),
    }
    for name, value in results.items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
