import json

import numpy as np
import pytest
import soundfile as sf

from ltx_pipeline.__main__ import main
from ltx_pipeline.media import probe_mp4

SMALL = ["--height", "64", "--width", "64", "--num-frames", "17", "--frame-rate", "25", "--seed", "1"]


def test_t2av_writes_an_mp4_with_both_streams_and_a_recipe(tmp_path, capsys):
    output = tmp_path / "clip.mp4"
    assert main(["t2av", "--prompt", "a red ball bounces on a wooden floor", *SMALL, "--output", str(output)]) == 0
    info = probe_mp4(output)
    assert (info.num_frames, info.width, info.height) == (17, 64, 64)
    assert info.video_duration_s == pytest.approx(17 / 25, abs=0.01)
    assert info.audio_duration_s == pytest.approx(17 / 25, abs=0.03)
    recipe = json.loads(output.with_suffix(".json").read_text())
    assert recipe["prompt"] == "a red ball bounces on a wooden floor" and recipe["seed"] == 1
    assert "stage 1 step 1/8" in capsys.readouterr().err


def test_a2v_keeps_the_clip(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.sin(np.arange(48000) / 48000 * 2 * np.pi * 220).astype(np.float32), 48000)
    output = tmp_path / "a2v.mp4"
    args = ["a2v", "--audio", str(clip), "--audio-start-time", "0.1", "--prompt", "a bell rings", *SMALL]
    assert main([*args, "--modality-scale", "2", "--output", str(output)]) == 0
    info = probe_mp4(output)
    assert info.audio_sample_rate == 48000 and info.num_frames == 17
    assert json.loads(output.with_suffix(".json").read_text())["audio_start_time"] == 0.1


def test_bad_input_is_a_clear_message_and_exit_code_2(tmp_path, capsys):
    args = ["t2av", "--prompt", "a ball", *SMALL, "--output", str(tmp_path / "x.mp4")]
    args[args.index("--num-frames") + 1] = "20"
    assert main(args) == 2
    assert "`--num-frames` must be 8k+1" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_compile_vae_with_the_24gb_mode_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from ltx_pipeline import TI2VidTwoStagesPipeline

    def never_loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(TI2VidTwoStagesPipeline, "from_model", never_loaded)
    args = ["t2av", "--prompt", "a ball", *SMALL, "--memory-mode", "24gb", "--compile-vae"]
    assert main([*args, "--output", str(tmp_path / "x.mp4")]) == 2
    assert "`compile_vae=True` cannot be combined with memory mode '24gb'" in capsys.readouterr().err


def test_image_option_reaches_the_pipeline(tmp_path):
    import PIL.Image

    PIL.Image.new("RGB", (96, 64), (200, 40, 40)).save(tmp_path / "still.png")
    output = tmp_path / "i2v.mp4"
    args = ["t2av", "--prompt", "a red ball", *SMALL, "--image", str(tmp_path / "still.png"), "0", "0.8"]
    assert main([*args, "--output", str(output)]) == 0
    (entry,) = json.loads(output.with_suffix(".json").read_text())["images"]
    assert (entry["frame_index"], entry["strength"]) == (0, 0.8)
    assert "cropped at the left and right" in entry["notice"]


def test_bad_image_option_is_a_clear_message(tmp_path, capsys):
    args = [
        "t2av",
        "--prompt",
        "a ball",
        *SMALL,
        "--image",
        "x.png",
        "first",
        "1",
        "--output",
        str(tmp_path / "x.mp4"),
    ]
    assert main(args) == 2
    assert "`--image` takes PATH FRAME STRENGTH" in capsys.readouterr().err


def test_lora_options_reach_the_pipeline_and_the_recipe(tmp_path, tiny_components, tiny_model_dir, capsys):
    from tests.lora_files import official_lora_tensors, random_lora_layers, write_lora

    layers = random_lora_layers(tiny_components["transformer"], ["proj_in", "transformer_blocks.0.attn1.to_q"], seed=3)
    lora = write_lora(tmp_path / "style.safetensors", official_lora_tensors(layers))
    outputs = {}
    for strength in ("0", "1"):
        output = tmp_path / f"lora_{strength}.mp4"
        args = [
            "t2av",
            "--prompt",
            "a red ball",
            *SMALL,
            "--model",
            str(tiny_model_dir),
            "--lora",
            str(lora),
            strength,
        ]
        args += ["--distilled-lora", str(lora)]
        assert main([*args, "--output", str(output)]) == 0
        outputs[strength] = json.loads(output.with_suffix(".json").read_text())
    user, distilled = outputs["1"]["loras"]
    assert (user["strength"], user["stages"]) == (1.0, [1, 2])
    assert (distilled["strength"], distilled["stages"]) == (1.0, [2])
    assert (
        main(["t2av", "--prompt", "a", *SMALL, "--model", str(tiny_model_dir), "--lora", "missing.safetensors", "1"])
        == 2
    )
    assert "missing.safetensors" in capsys.readouterr().err


def test_v2a_gives_the_video_new_sound_and_keeps_its_frames(tmp_path):
    from tests.test_pipeline_v2a import video_packets, write_video

    source = write_video(tmp_path / "in.mp4")
    output = tmp_path / "v2a.mp4"
    args = ["v2a", "--video", str(source), "--prompt", "a red ball bounces on a metal floor", "--seed", "1"]
    assert main([*args, "--output", str(output)]) == 0
    assert video_packets(output) == video_packets(source)
    assert probe_mp4(output).audio_duration_s == pytest.approx(17 / 24, abs=0.01)
    assert json.loads(output.with_suffix(".json").read_text())["video_copied"] is True


def test_v2a_names_its_flags_when_the_video_does_not_fit(tmp_path, capsys):
    from tests.test_pipeline_v2a import write_video

    source = write_video(tmp_path / "in.mp4", num_frames=20)
    assert main(["v2a", "--video", str(source), "--prompt", "a ball", "--output", str(tmp_path / "x.mp4")]) == 2
    assert "has 20 frames" in capsys.readouterr().err


def test_retake_regenerates_the_span(tmp_path):
    from tests.test_pipeline_v2a import write_video

    source = write_video(tmp_path / "in.mp4")
    output = tmp_path / "retake.mp4"
    args = ["retake", "--video", str(source), "--prompt", "a blue ball", "--start-time", "0.4", "--end-time", "0.6"]
    assert main([*args, "--regenerate", "audio", "--output", str(output)]) == 0
    recipe = json.loads(output.with_suffix(".json").read_text())
    assert (recipe["start_time"], recipe["end_time"], recipe["regenerate"]) == (0.4, 0.6, "audio")
    assert probe_mp4(output).num_frames == 17


def test_every_mode_is_a_subcommand():
    from ltx_pipeline.__main__ import build_parser
    from ltx_pipeline.modes import MODES, mode_named

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == set(MODES) == {"t2av", "a2v", "v2a", "retake", "t2av-long", "a2v-long"}
    with pytest.raises(ValueError, match="Unknown mode 'foley'"):
        mode_named("foley")


def test_a2v_longer_than_one_window_runs_as_windows_and_keeps_the_whole_clip(tmp_path, capsys):
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.sin(np.arange(72000) / 48000 * 2 * np.pi * 220).astype(np.float32), 48000)  # 1.5 s
    output = tmp_path / "long.mp4"
    args = ["a2v", "--audio", str(clip), "--prompt", "a bell rings", *SMALL, "--duration", "all"]
    assert main([*args, "--overlap-latent-frames", "1", "--output", str(output)]) == 0
    info = probe_mp4(output)
    assert info.num_frames == 38 and info.audio_duration_s == pytest.approx(1.5, abs=1e-3)
    assert "window 3 of 3" in capsys.readouterr().err
    recipe = json.loads(output.with_suffix(".json").read_text())
    assert (recipe["windows"], recipe["window_frames"], recipe["overlap_latent_frames"]) == (3, 17, 1)


def test_overlap_not_smaller_than_the_window_is_refused(tmp_path, capsys):
    args = ["t2av-long", "--prompt", "a ball", "--duration", "2", "--window-frames", "17", "--overlap-latent-frames"]
    assert main([*args, "3", "--output", str(tmp_path / "x.mp4")]) == 2
    assert "`--overlap-latent-frames` must be smaller than the window's 3 latent frames" in capsys.readouterr().err
