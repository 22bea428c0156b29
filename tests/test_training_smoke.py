"""The staged training script runs every stage on CPU at toy size, saves loadable components and resumes."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel

from training.train import STAGES, parse_args, train

TOY = ["--variant", "tiny", "--height", "64", "--width", "64", "--num-frames", "17", "--num-clips", "3"]
TOY += ["--batch-size", "2", "--log-every", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("checkpoints")
    states = {
        stage: train(parse_args(["--stage", stage, "--steps", "2", "--out", str(out), *TOY])) for stage in STAGES
    }
    return out, states


def test_every_stage_trains_and_saves(trained):
    out, states = trained
    for stage in STAGES:
        assert states[stage]["step"] == 2
        assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in states[stage]["log"])
        settings = json.loads((out / f"{stage}_settings.json").read_text())
        assert settings["runs"][0]["steps"] == 2 and settings["runs"][0]["variant"] == "tiny"
    for key in ("vae", "audio_vae", "vocoder", "latent_upsampler", "transformer", "connectors", "text_encoder"):
        assert (out / key / "config.json").exists(), key
    vae = AutoencoderKLLTX2Video.from_pretrained(out / "vae")
    # The saved VAE carries the latent statistics the pipeline normalises with (not the identity defaults).
    assert not torch.allclose(vae.latents_std, torch.ones_like(vae.latents_std))


def test_resume_continues_the_step_count_and_changes_weights(trained):
    out, _ = trained
    before = LTX2VideoTransformer3DModel.from_pretrained(out / "transformer").state_dict()
    state = train(parse_args(["--stage", "transformer", "--steps", "1", "--resume", "--out", str(out), *TOY]))
    after = LTX2VideoTransformer3DModel.from_pretrained(out / "transformer").state_dict()
    assert state["step"] == 3
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert len(json.loads((out / "transformer_settings.json").read_text())["runs"]) == 2


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "0", "--out", "x"])
    with pytest.raises(SystemExit):
        parse_args(["--stage", "video_vae", "--steps", "1", "--out", "x", "--num-frames", "20"])


def test_shipped_embedded_model_fits_the_budget_and_records_its_training():
    folder = Path(__file__).resolve().parents[1] / "ltx_pipeline" / "embedded_model"
    if not (folder / "model_index.json").is_file():
        pytest.skip("no embedded model shipped in this checkout")
    size_mb = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    assert size_mb <= 60.0
    record = json.loads((folder / "training_settings.json").read_text())
    assert set(record["components"].values()) == {"trained"}
    assert record["steps"]["transformer"] > 0 and record["steps"]["video_vae"] > 0
