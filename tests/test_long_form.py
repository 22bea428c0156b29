import json
import shutil

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from ltx_pipeline import Audio, constants
from ltx_pipeline.long_form import (
    PromptSegment,
    check_free_space,
    parse_prompt_timeline,
    plan_windows,
    window_prompt,
)
from ltx_pipeline.media import probe_mp4
from ltx_pipeline.pipeline_long_form import LongFormPipeline, LongFormResume, LongFormWriter, portable
from ltx_pipeline.types import LongFormFinished, StepPreview, WindowFinished, WindowStarted

FRAME_RATE = 25.0
# 17-frame windows (3 latent frames) holding 1 latent frame: a window adds 16 frames; 1.5 s is 38 frames, 3 windows.
SMALL = {"prompt": "a red ball bounces", "height": 64, "width": 64, "frame_rate": FRAME_RATE, "seed": 0}
WINDOW = {"window_frames": 17, "overlap_latent_frames": 1}


@pytest.fixture
def pipe(tiny_components):
    return LongFormPipeline(**tiny_components)


def click_track(seconds: float, sampling_rate: int = 16000) -> Audio:
    time_s = torch.arange(round(seconds * sampling_rate)) / sampling_rate
    tone = 0.3 * torch.sin(2 * torch.pi * 330 * time_s) * (torch.sin(2 * torch.pi * 2 * time_s) > 0)
    return Audio(tone[None].float(), sampling_rate)


def drain(events) -> list:
    return list(events)


def read_mp4_audio(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)


def record_transformer_calls(transformer) -> tuple[list, list]:
    """Every transformer call's inputs, and each call's output turned into the clean estimate x - sigma * v."""
    calls = []

    def hook(module, args, kwargs, output):
        sigma = float(kwargs["sigma"][0]) / module.config.timestep_scale_multiplier
        calls.append(
            {
                "video": kwargs["hidden_states"].clone(),
                "audio": kwargs["audio_hidden_states"].clone(),
                "video_timestep": kwargs["timestep"].clone(),
                "audio_timestep": kwargs["audio_timestep"].clone(),
                "video_final": kwargs["hidden_states"].float() - sigma * output[0].float(),
                "audio_final": kwargs["audio_hidden_states"].float() - sigma * output[1].float(),
                "video_tokens": kwargs["hidden_states"].shape[1],
            }
        )

    return calls, transformer.register_forward_hook(hook, with_kwargs=True)


def test_windows_write_every_frame_once():
    for total in (17, 38, 97, 98, 1440):
        windows = plan_windows(total, 17, 2)
        position = 0
        for window in windows:
            assert window.written_start_frame == position
            assert (window.num_frames - 1) % 8 == 0 and window.first_written + window.num_written <= window.num_frames
            position += window.num_written
        assert position == total
    assert [window.start_frame for window in plan_windows(38, 17, 1)] == [0, 16, 32]


def test_a2v_long_output_lasts_as_long_as_the_audio_and_carries_it(pipe, tmp_path):
    clip = click_track(1.5)
    events = drain(pipe.stream(audio=clip, output=tmp_path / "long.mp4", **SMALL, **WINDOW))
    finished = events[-1]
    assert isinstance(finished, LongFormFinished) and not finished.stopped
    starts = [event for event in events if isinstance(event, WindowStarted)]
    assert [(event.window, event.total_windows) for event in starts] == [(1, 3), (2, 3), (3, 3)]
    info = probe_mp4(finished.path)
    assert info.num_frames == 38  # ceil(1.5 s x 25 fps)
    assert info.audio_duration_s == pytest.approx(1.5, abs=1e-3)
    # Each window's sound is the clip's own samples for the frames it wrote; together they are the clip.
    written = torch.cat([event.audio.waveform for event in events if isinstance(event, WindowFinished)], dim=-1)
    assert torch.equal(written, clip.waveform)
    decoded = read_mp4_audio(finished.path)[0, : clip.num_samples]
    assert np.corrcoef(decoded[800:-800], clip.waveform[0, 800:-800].numpy())[0, 1] > 0.99
    recipe = json.loads(finished.recipe_path.read_text())
    assert recipe["windows"] == 3 and recipe["duration_s"] == 1.5 and recipe["stopped"] is False


@pytest.mark.parametrize("seam", ["reencode", "copy"])
def test_a2v_seams_are_held_clean_at_both_stage_sizes(pipe, tmp_path, seam):
    calls, handle = record_transformer_calls(pipe.transformer)
    try:
        events = drain(pipe.stream(audio=click_track(1.5), output=tmp_path / "long.mp4", seam=seam, **SMALL, **WINDOW))
    finally:
        handle.remove()
    # 3 windows (38 frames: 17, 17 and 9), 8 + 3 steps each.
    assert len(calls) == 33
    first, second = calls[:11], calls[11:22]
    # One latent frame held: the second window's first frame is the first window's last.
    first_frames = next(event for event in events if isinstance(event, WindowFinished)).frames
    for stage, steps in ((1, slice(0, 8)), (2, slice(8, 11))):
        held = second[steps.start]["video_tokens"] // 3  # one of the window's 3 latent frames
        if seam == "copy":  # the window before's last latents, after its last step
            expected = first[steps.stop - 1]["video_final"][:, -held:]
        else:  # its last frame, encoded again at this stage's size
            size = (SMALL["height"] // (3 - stage), SMALL["width"] // (3 - stage))
            expected = pipe._encode_frames(first_frames[-1:], *size)
        for call in second[steps]:
            assert float(call["video_timestep"][:, :held].abs().max()) == 0.0, f"stage {stage}"
            assert float(call["video_timestep"][:, held:].min()) > 0.0
            torch.testing.assert_close(call["video"][:, :held].float(), expected, atol=1e-5, rtol=1e-5)
        # The first window holds nothing.
        assert float(first[steps.start]["video_timestep"].min()) > 0.0


def test_t2av_long_holds_the_shared_audio_and_continues_it(pipe, tmp_path):
    calls, handle = record_transformer_calls(pipe.transformer)
    try:
        events = drain(pipe.stream(duration_s=1.0, output=tmp_path / "long.mp4", **SMALL, **WINDOW))
    finally:
        handle.remove()
    first, second = calls[:11], calls[11:]
    # Window 2 starts at frame 16 (0.64 s): audio grid index 16 of 25 a second; window 1 reached index 17.
    previous_final = first[-1]["audio_final"][:, 16:17]
    for call in second:
        assert float(call["audio_timestep"][:, :1].abs().max()) == 0.0
        assert float(call["audio_timestep"][:, 1:].min()) > 0.0
        torch.testing.assert_close(call["audio"][:, :1].float(), previous_final, atol=1e-5, rtol=1e-5)
    info = probe_mp4(events[-1].path)
    assert info.num_frames == 25 and info.audio_duration_s == pytest.approx(1.0, abs=1e-3)
    written = [event.audio for event in events if isinstance(event, WindowFinished)]
    assert sum(audio.num_samples for audio in written) == round(1.0 * written[0].sampling_rate)


@pytest.mark.parametrize("source", ["audio", "text"])
def test_stop_keeps_the_finished_windows_as_a_playable_file(pipe, tmp_path, source):
    length = {"audio": click_track(1.5)} if source == "audio" else {"duration_s": 1.5}
    events = []
    for event in pipe.stream(**length, output=tmp_path / "long.mp4", **SMALL, **WINDOW):
        events.append(event)
        if isinstance(event, StepPreview) and sum(isinstance(seen, WindowStarted) for seen in events) == 2:
            pipe.cancel()  # during the second window: it ends after this step
    finished = events[-1]
    assert isinstance(finished, LongFormFinished) and finished.stopped
    assert sum(isinstance(event, WindowFinished) for event in events) == 1
    info = probe_mp4(finished.path)
    assert info.num_frames == 17 and info.audio_duration_s == pytest.approx(17 / FRAME_RATE, abs=1e-3)
    with av.open(str(finished.path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 17
    recipe = json.loads(finished.recipe_path.read_text())
    assert recipe["stopped"] is True and recipe["stopped_after_window"] == 1
    assert recipe["written_s"] == pytest.approx(17 / FRAME_RATE)


def test_prompt_timeline_picks_each_windows_prompt(pipe, tmp_path):
    timeline = "0-0.7 s: a blue ball bounces; 0.7-2 s: a green ball bounces"
    events = drain(
        pipe.stream(duration_s=1.5, prompt_timeline=timeline, output=tmp_path / "long.mp4", **SMALL, **WINDOW)
    )
    prompts = [event.prompt for event in events if isinstance(event, WindowStarted)]
    assert prompts == ["a blue ball bounces", "a green ball bounces", "a green ball bounces"]
    assert json.loads(events[-1].recipe_path.read_text())["window_prompts"] == prompts


def test_prompt_timeline_parsing_and_gaps():
    segments = parse_prompt_timeline("0-10 s: a red ball; 10-25 s: a blue ball\n30-40: a green ball")
    assert segments == [
        PromptSegment(0.0, 10.0, "a red ball"),
        PromptSegment(10.0, 25.0, "a blue ball"),
        PromptSegment(30.0, 40.0, "a green ball"),
    ]
    assert window_prompt(segments, 8.0, 14.0, "main") == "a blue ball"
    assert window_prompt(segments, 25.0, 31.0, "main") == "main"  # mostly in the gap


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"overlap_latent_frames": 3}, "`overlap_latent_frames` must be smaller than the window's 3 latent frames"),
        ({"overlap_latent_frames": 0}, "`overlap_latent_frames` must be an integer of at least 1"),
        ({"window_frames": 20}, "`window_frames` must be 8k+1"),
        ({"max_audio_duration_s": 1.0}, "longer than the limit of 1 s (`max_audio_duration_s`, --max-audio-duration)"),
        ({"duration_s": 5.0}, "`duration_s` must fit the clip"),
        ({"prompt_timeline": "a ball"}, "`prompt_timeline` must be ranges with prompts"),
        ({"prompt_timeline": "0-1 s: a; 0.5-2 s: b"}, "must start at or after 1 s"),
        ({"prompt_timeline": "3-4 s: a ball"}, "starts past the clip's end"),
        ({"output": "clip.mov"}, "`path` must end in .mp4"),
    ],
)
def test_bad_input_is_refused_before_any_work(pipe, tmp_path, change, message):
    kwargs = {"audio": click_track(1.5), "output": tmp_path / "long.mp4", **SMALL, **WINDOW, **change}
    with pytest.raises(ValueError) as error:
        pipe.stream(**kwargs)
    assert message in str(error.value)
    assert not (tmp_path / "long.mp4").exists()


def test_t2av_long_needs_a_duration(pipe, tmp_path):
    with pytest.raises(ValueError, match="`duration_s` is needed without `audio`"):
        pipe.stream(output=tmp_path / "long.mp4", **SMALL, **WINDOW)


def test_free_disk_space_is_checked(tmp_path):
    check_free_space(tmp_path / "out" / "clip.mp4", 1024)
    with pytest.raises(ValueError, match="MiB free; this clip needs up to"):
        check_free_space(tmp_path / "out" / "clip.mp4", 2**62)


# --- Bad input on the command line, as a user meets it ---------------------------------------------------------------

CLI_SMALL = ["--height", "64", "--width", "64", "--num-frames", "17", "--frame-rate", "25", "--seed", "1"]


def test_the_cli_refuses_audio_longer_than_the_limit_naming_it(tmp_path, capsys):
    from ltx_pipeline.__main__ import main

    limit = constants.LONG_FORM_MAX_AUDIO_DURATION_S
    clip = tmp_path / "long.wav"
    sf.write(clip, np.zeros(int((limit + 1) * 8_000), np.int16), 8_000, subtype="PCM_16")  # 10 min 1 s
    output = tmp_path / "x.mp4"
    args = [
        "a2v",
        "--audio",
        str(clip),
        "--prompt",
        "a bell",
        *CLI_SMALL,
        "--duration",
        "all",
        "--output",
        str(output),
    ]
    assert main(args) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"lasts {limit + 1:.1f} s, longer than the limit of {limit:g} s" in message
    assert "--max-audio-duration" in message and not output.exists()
    # The limit is the user's to set.
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(16_000, np.int16), 8_000, subtype="PCM_16")  # 2 s
    args[2] = str(short)
    assert main([*args, "--max-audio-duration", "1"]) == 2
    assert "lasts 2.0 s, longer than the limit of 1 s" in capsys.readouterr().err


def test_the_cli_refuses_a_length_the_disk_cannot_hold_before_any_work(tmp_path, capsys):
    from ltx_pipeline.__main__ import main

    free_bytes = shutil.disk_usage(tmp_path).free
    seconds = 2 * free_bytes * 8 / (64 * 64 * constants.LONG_FORM_DISK_BITS_PER_PIXEL * 25)
    output = tmp_path / "x.mp4"
    args = ["t2av", "--prompt", "a ball", *CLI_SMALL, "--duration", f"{seconds:.0f}", "--output", str(output)]
    assert main(args) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "MiB free; this clip needs up to" in message and not output.exists()


def test_held_strength_below_1_lets_the_model_repaint_the_held_frames(pipe, tmp_path):
    calls, handle = record_transformer_calls(pipe.transformer)
    try:
        drain(pipe.stream(audio=click_track(1.5), output=tmp_path / "x.mp4", held_strength=0.5, **SMALL, **WINDOW))
    finally:
        handle.remove()
    second = calls[11:22]
    held = second[0]["video_tokens"] // 3
    for call in second:  # the held tokens denoise at half the step's noise level
        timestep = call["video_timestep"]
        torch.testing.assert_close(timestep[:, :held], 0.5 * timestep[:, held:].max().expand(1, held))
    with pytest.raises(ValueError, match="`held_strength` must be a number from 0 to 1; got 1.5"):
        pipe.stream(audio=click_track(1.5), output=tmp_path / "y.mp4", held_strength=1.5, **SMALL, **WINDOW)


def comparable(recipe: dict) -> dict:
    """A recipe without its wall-clock fields."""
    return {key: value for key, value in recipe.items() if key not in ("timings_s", "window_seconds")}


@pytest.mark.parametrize("source", ["audio", "text"])
def test_a_run_resumed_across_processes_makes_the_same_clip(pipe, tmp_path, source):
    """Groups of windows, with the plan and resume points pickled between them as a ZeroGPU call boundary does, make
    the frames, sound and recipe one uninterrupted run makes with the same seed. (Frames are compared as generated:
    the mp4 encoder's threads may round a pixel differently from one encode to the next.)"""
    import pickle

    length = {"audio": click_track(2.0)} if source == "audio" else {"duration_s": 2.0}
    single_events = drain(pipe.stream(**length, output=tmp_path / "single.mp4", **SMALL, **WINDOW))
    single = single_events[-1]
    plan = pickle.loads(pickle.dumps(pipe.plan_run(**length, output=tmp_path / "grouped.mp4", **SMALL, **WINDOW)))
    assert len(plan.windows) == 4
    writer, resume, grouped_events = LongFormWriter(plan), None, []
    for first, end in ((0, 1), (1, 3), (3, 4)):  # three "calls": windows 1, 2-3, 4
        # A call is sent only the sound its windows read (`plan.for_windows`), not the whole clip.
        sent = pickle.dumps(plan.for_windows(first, end))
        part = pickle.loads(sent)
        if source == "audio":
            samples, whole = part.clip.audio.waveform, plan.clip.audio.waveform
            assert samples.shape[-1] < whole.shape[-1] if end - first < 4 else samples.shape[-1] == whole.shape[-1]
            # What crosses is the part's samples, not the whole clip's storage (a view would pickle all of it).
            assert (
                len(sent) < len(pickle.dumps(plan)) - (whole.numel() - samples.numel()) * whole.element_size() + 1024
            )
        for event in pipe.run_windows(part, resume, end):
            event = pickle.loads(pickle.dumps(portable(event)))
            if isinstance(event, LongFormResume):
                resume = event
            else:
                writer.on_event(event)
                grouped_events.append(event)
        assert resume.next_window == end
    grouped = writer.finish(resume)
    assert not grouped.stopped
    windows = [
        [event for event in events if isinstance(event, WindowFinished)] for events in (single_events, grouped_events)
    ]
    assert len(windows[0]) == len(windows[1]) == 4
    for one, other in zip(*windows, strict=True):
        np.testing.assert_array_equal(one.frames, other.frames)
        torch.testing.assert_close(one.audio.waveform, other.audio.waveform, rtol=0, atol=0)
    np.testing.assert_array_equal(read_mp4_audio(grouped.path), read_mp4_audio(single.path))
    assert probe_mp4(grouped.path).num_frames == probe_mp4(single.path).num_frames == 50
    assert comparable(grouped.recipe) == comparable(single.recipe)


def test_run_windows_refuses_a_range_outside_the_plan(pipe, tmp_path):
    plan = pipe.plan_run(duration_s=1.0, output=tmp_path / "long.mp4", **SMALL, **WINDOW)
    with pytest.raises(ValueError, match=r"`end` must be after the next window \(0\) and at most 2; got 3"):
        pipe.run_windows(plan, None, 3)


def test_an_ltx_2_5_run_resumed_across_processes_carries_its_ancestral_noise(tmp_path):
    """LTX-2.5's distilled text to audio+video draws stage 1's ancestral noise from a generator of its own: a resumed
    run goes on from its state (a fresh one would draw the first window's noise again)."""
    import pickle

    from ltx_pipeline import tiny

    pipe = LongFormPipeline(**tiny.build_tiny_components("2.5"))
    request = {**SMALL, **WINDOW, "duration_s": 1.0, "mode": "distilled"}
    single = [
        event for event in pipe.stream(**request, output=tmp_path / "a.mp4") if isinstance(event, WindowFinished)
    ]
    plan = pipe.plan_run(**request, output=tmp_path / "b.mp4")
    assert plan.recipe.stage_1_sampler == "euler_ancestral"
    first = [pickle.loads(pickle.dumps(portable(event))) for event in pipe.run_windows(plan, None, 1)]
    resume = first[-1]
    assert isinstance(resume, LongFormResume) and resume.ancestral_noise_state is not None
    second = [event for event in pipe.run_windows(plan, resume, 2) if isinstance(event, WindowFinished)]
    np.testing.assert_array_equal(second[0].frames, single[1].frames)
    torch.testing.assert_close(second[0].audio.waveform, single[1].audio.waveform, rtol=0, atol=0)
