"""Assemble trained components into the shipped diffusers-format folder.

    python -m training.export --ckpt DIR [--out ltx_pipeline/embedded_model]

Components missing from DIR keep their fresh initialisation (and the export says so). The folder is written with
`TI2VidTwoStagesPipeline(**components).save_pretrained(out)` in bf16 (the vocoder in float32, as the loader keeps
it), with each stage's training settings copied beside it; a trained vocoder's output channels are put in phase first
(`align_vocoder_channels`). A DIR started from an exported folder (its
`training_settings.json` copied along) keeps that record for the stages it did not train again.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch

from ltx_pipeline import TI2VidTwoStagesPipeline
from training import config
from training.train import COMPONENT_CLASSES, STAGES, align_vocoder_channels, stereo_mel
from world import generate_clip

MAX_FOLDER_MB = 60.0
ALIGNMENT_SEED = 123_456  # a world clip (outside the held-out range) on which the vocoder's channels are compared


def export(ckpt: Path, out: Path, variant: str = "embedded") -> dict[str, str]:
    components = config.build_components(seed=0, variant=variant)
    origin = {}
    for key, cls in COMPONENT_CLASSES.items():
        if (ckpt / key).is_dir():
            components[key] = cls.from_pretrained(ckpt / key, torch_dtype=torch.float32).eval()
            origin[key] = "trained"
        else:
            origin[key] = "untrained (fresh initialisation)"
    if origin["vocoder"] == "trained":  # a vocoder trained before the downmix loss may have antiphase channels
        clip = generate_clip(ALIGNMENT_SEED, 32, 32)
        flipped = align_vocoder_channels(components["vocoder"], stereo_mel(torch.from_numpy(clip.audio[None])))
        if flipped:
            print(f"vocoder: output channels {flipped} were in antiphase with channel 0; flipped")
    for key, module in components.items():
        if isinstance(module, torch.nn.Module):
            module.to(torch.float32 if key == "vocoder" else torch.bfloat16)
    # A checkpoint folder started from an exported one keeps the earlier stages' record only in that export's file.
    exported = ckpt / "training_settings.json"
    previous = json.loads(exported.read_text()) if exported.exists() else {}
    if out.exists():
        shutil.rmtree(out)
    TI2VidTwoStagesPipeline(**components).save_pretrained(out, safe_serialization=True)
    settings = {
        stage: json.loads((ckpt / f"{stage}_settings.json").read_text())
        for stage in STAGES
        if (ckpt / f"{stage}_settings.json").exists()
    }
    states = {
        stage: json.loads((ckpt / f"{stage}_state.json").read_text())
        for stage in STAGES
        if (ckpt / f"{stage}_state.json").exists()
    }
    record = {
        "components": origin,
        "steps": {**previous.get("steps", {}), **{stage: state["step"] for stage, state in states.items()}},
        "final_loss": {
            **previous.get("final_loss", {}),
            **{stage: state["log"][-1] if state["log"] else None for stage, state in states.items()},
        },
        "settings": {**previous.get("settings", {}), **settings},
    }
    (out / "training_settings.json").write_text(json.dumps(record, indent=1, default=str))
    size_mb = sum(path.stat().st_size for path in out.rglob("*") if path.is_file()) / 1e6
    if size_mb > MAX_FOLDER_MB:
        raise RuntimeError(f"The exported folder is {size_mb:.1f} MB; the repo ships at most {MAX_FOLDER_MB} MB.")
    print(f"exported to {out}: {size_mb:.1f} MB; {origin}")
    return origin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model"
    )
    parser.add_argument("--variant", default="embedded", choices=config.VARIANTS)
    args = parser.parse_args()
    export(args.ckpt, args.out, args.variant)


if __name__ == "__main__":
    main()
