import av
import numpy as np
import pytest
import torch

from ltx_pipeline import Finished, StepPreview, V2AudPipeline
from ltx_pipeline.media import probe_mp4, save_output, write_mp4
from ltx_pipeline.types import Audio

FRAME_RATE = 24.0
PROMPT = "a red ball bounces on a metal floor"


def write_video(path, num_frames=17, height=64, width=64, seed=0, with_audio=True):
    """A small mp4 of moving noise blocks (and, by default, a sound track the pipeline must ignore)."""
    rng = np.random.default_rng(seed)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (num_frames, height // 8, width // 8, 3)), 8, 1), 8, 2)
    audio = Audio(torch.from_numpy(rng.normal(0, 0.1, (2, round(num_frames / FRAME_RATE * 48000)))).float(), 48000)
    write_mp4(path, frames.astype(np.uint8), audio, FRAME_RATE)
    return path


def decoded_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(video=0) if packet.size]


@pytest.fixture
def pipe(tiny_components):
    return V2AudPipeline(**tiny_components)


def test_new_audio_for_the_video_whose_frames_are_kept_exactly(pipe, tmp_path):
    source = write_video(tmp_path / "in.mp4")
    output = pipe(video=source, prompt=PROMPT)
    assert np.array_equal(output.frames, decoded_frames(source))
    assert output.audio.duration_s == pytest.approx(17 / FRAME_RATE, abs=1 / output.audio.sampling_rate)
    assert output.recipe["video_copied"] is True
    # The recipe holds what this mode ran: one stage, the audio's guidance, no video guidance (the video is held).
    assert output.recipe["stage_1_sigmas"] and "stage_2_sigmas" not in output.recipe
    assert "video_guidance" not in output.recipe and output.recipe["audio_guidance"]["cfg_scale"] == 1.0
    mp4, _ = save_output(output, tmp_path / "out.mp4")
    assert video_packets(mp4) == video_packets(source)  # the video stream is copied, not re-encoded
    info = probe_mp4(mp4)
    assert info.num_frames == 17 and info.audio_duration_s == pytest.approx(17 / FRAME_RATE, abs=0.01)
    with av.open(str(mp4)) as container:
        sound = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)
    with av.open(str(source)) as container:
        original = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)
    assert not np.allclose(sound[:, : original.shape[1]], original[:, : sound.shape[1]], atol=1e-3)


def test_the_video_is_held_clean_at_the_steps_sigma(pipe, tmp_path):
    source = write_video(tmp_path / "in.mp4")
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (kwargs["hidden_states"].clone(), kwargs["timestep"], kwargs["sigma"], kwargs["audio_timestep"])
        ),
        with_kwargs=True,
    )
    try:
        pipe(video=source, prompt=PROMPT)
    finally:
        handle.remove()
    assert len(seen) == 8  # one stage of the distilled schedule
    assert all(torch.equal(video, seen[0][0]) for video, *_ in seen)
    assert all(float(timestep.abs().max()) == 0.0 for _, timestep, *_ in seen)
    # Every audio token at the step's sigma (the audio timesteps are per token: the shapes of every other mode).
    assert all(
        float(sigma.min()) > 0 and torch.equal(audio, sigma[:, None].expand_as(audio)) for *_, sigma, audio in seen
    )


def test_the_audio_follows_the_video(pipe, tmp_path):
    first = pipe(video=write_video(tmp_path / "a.mp4", seed=1), prompt=PROMPT, seed=0)
    second = pipe(video=write_video(tmp_path / "b.mp4", seed=2), prompt=PROMPT, seed=0)
    assert not torch.equal(first.audio.waveform, second.audio.waveform)


def test_events_stream_audio_previews(pipe, tmp_path):
    events = list(pipe.stream(video=write_video(tmp_path / "in.mp4"), prompt=PROMPT))
    assert [type(event).__name__ for event in events] == ["StepPreview"] * 8 + ["Finished"]
    assert all(event.audio is not None for event in events if isinstance(event, StepPreview))
    assert isinstance(events[-1], Finished)


def test_a_frame_count_that_is_not_8k_plus_1_is_refused_with_the_trim_offered(pipe, tmp_path):
    source = write_video(tmp_path / "in.mp4", num_frames=20)
    with pytest.raises(ValueError, match=r"has 20 frames.*num_frames=17"):
        pipe(video=source, prompt=PROMPT)
    output = pipe(video=source, prompt=PROMPT, num_frames=17)
    assert np.array_equal(output.frames, decoded_frames(source)[:17])
    assert output.recipe["video_copied"] is False
    assert "trimmed to its first 17 of 20 frames" in output.recipe["video_reencoded_because"]
    mp4, _ = save_output(output, tmp_path / "out.mp4")
    assert probe_mp4(mp4).num_frames == 17


def test_a_size_off_the_grid_is_refused_with_crop_and_resize_offered(pipe, tmp_path):
    source = write_video(tmp_path / "in.mp4", height=80, width=64)
    with pytest.raises(ValueError, match=r"64x80.*fit='crop'.*64x64.*fit='resize'"):
        pipe(video=source, prompt=PROMPT)
    cropped = pipe(video=source, prompt=PROMPT, fit="crop")
    assert cropped.frames.shape == (17, 64, 64, 3)
    assert np.array_equal(cropped.frames, decoded_frames(source)[:, 8:72])
    assert cropped.recipe["video_changes"] == ["centre-cropped from 64x80 to 64x64"]
    with pytest.raises(ValueError, match="`fit` must be None, 'crop' or 'resize'; got 'squash'"):
        pipe(video=source, prompt=PROMPT, fit="squash")


def test_a_file_that_is_not_a_video_is_named_in_the_error(pipe, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="`video` notes.mp4 is not a readable video file"):
        pipe(video=tmp_path / "notes.mp4", prompt=PROMPT)
    with pytest.raises(FileNotFoundError, match="`video` file not found: missing.mp4"):
        pipe(video=tmp_path / "missing.mp4", prompt=PROMPT)


def test_a_video_over_the_work_limit_is_refused_before_it_is_decoded(pipe, tmp_path, monkeypatch):
    from ltx_pipeline import video_input
    from ltx_pipeline.limits import WorkLimit

    pipe.work_limit = WorkLimit(64 * 64 * 9, source="set for this test")
    source = write_video(tmp_path / "in.mp4")  # 64 x 64 x 17
    opened, open_file = [], av.open
    monkeypatch.setattr(video_input.av, "open", lambda *args, **kw: opened.append(args) or open_file(*args, **kw))
    with pytest.raises(ValueError, match="64 x 64 x 17"):
        pipe(video=source, prompt=PROMPT)
    assert len(opened) == 1  # the header was read; the frames never were
