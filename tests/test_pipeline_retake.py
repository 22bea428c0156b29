import numpy as np
import pytest
import torch

from ltx_pipeline import RetakePipeline
from ltx_pipeline.audio import load_audio
from ltx_pipeline.engine.streams import TimeSpan, audio_frame_seconds, span_mask, video_frame_seconds
from tests.test_pipeline_v2a import FRAME_RATE, PROMPT, decoded_frames, video_packets, write_video

SPAN = {"start_time": 0.4, "end_time": 0.6}  # inside a 17-frame clip at 24 fps (0.708 s)


@pytest.fixture
def pipe(tiny_components):
    return RetakePipeline(**tiny_components)


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.mp4")


def record_passes(pipe):
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            {
                name: kwargs[name].clone()
                for name in (
                    "hidden_states",
                    "audio_hidden_states",
                    "timestep",
                    "audio_timestep",
                    "sigma",
                    "audio_sigma",
                )
            }
        ),
        with_kwargs=True,
    )
    return seen, handle


def test_tokens_outside_the_span_stay_clean_and_those_inside_are_denoised(pipe, clip):
    seen, handle = record_passes(pipe)
    try:
        pipe(video=clip, prompt=PROMPT, **SPAN)
    finally:
        handle.remove()
    assert len(seen) == 8
    video_inside = seen[0]["timestep"][0] > 0
    audio_inside = seen[0]["audio_timestep"][0] > 0
    # Latent frame 2 holds pixel frames 9-16 (0.375-0.708 s): the only one overlapping [0.4, 0.6).
    tokens_per_frame = video_inside.numel() // 3
    assert video_inside.tolist() == [False] * 2 * tokens_per_frame + [True] * tokens_per_frame
    assert 0 < int(audio_inside.sum()) < audio_inside.numel()
    for step in seen:
        assert torch.equal(step["hidden_states"][0, ~video_inside], seen[0]["hidden_states"][0, ~video_inside])
        assert torch.equal(
            step["audio_hidden_states"][0, ~audio_inside], seen[0]["audio_hidden_states"][0, ~audio_inside]
        )
        assert float(step["sigma"].min()) > 0 and torch.equal(step["sigma"], step["audio_sigma"])
    assert not torch.equal(seen[-1]["hidden_states"][0, video_inside], seen[0]["hidden_states"][0, video_inside])


def test_outside_the_span_the_output_is_the_clip_itself(pipe, clip):
    output = pipe(video=clip, prompt=PROMPT, **SPAN)
    original_frames = decoded_frames(clip)
    assert np.array_equal(output.frames[:9], original_frames[:9])
    assert not np.array_equal(output.frames[9:], original_frames[9:])
    original = load_audio(clip, duration=17 / FRAME_RATE)
    rate = original.sampling_rate
    assert output.audio.sampling_rate == rate and output.audio.num_samples == original.num_samples
    first, last = round(0.4 * rate), round(0.6 * rate)
    assert torch.equal(output.audio.waveform[:, :first], original.waveform[:, :first])
    assert torch.equal(output.audio.waveform[:, last:], original.waveform[:, last:])
    assert not torch.allclose(output.audio.waveform[:, first:last], original.waveform[:, first:last])


def test_one_stream_regenerated_leaves_the_other_exactly(pipe, clip):
    audio_only = pipe(video=clip, prompt=PROMPT, regenerate="audio", **SPAN)
    assert np.array_equal(audio_only.frames, decoded_frames(clip))
    assert audio_only.video_source == clip  # saved by copying the clip's video packets
    video_only = pipe(video=clip, prompt=PROMPT, regenerate="video", **SPAN)
    assert torch.equal(video_only.audio.waveform, load_audio(clip, duration=17 / FRAME_RATE).waveform)
    assert video_packets(clip)  # the clip is readable as packets (what copying relies on)


@pytest.mark.parametrize(
    ("start_time", "end_time"),
    [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.3), (0.3, 5.0), (float("nan"), 0.3)],
)
def test_a_span_of_zero_length_or_outside_the_clip_is_refused(pipe, clip, start_time, end_time):
    with pytest.raises(ValueError, match=r"`start_time`.*`end_time`|must be a number of seconds"):
        pipe(video=clip, prompt=PROMPT, start_time=start_time, end_time=end_time)


def test_a_stream_name_other_than_video_audio_or_both_is_refused(pipe, clip):
    with pytest.raises(ValueError, match="`regenerate` must be 'video', 'audio' or 'both'; got 'sound'"):
        pipe(video=clip, prompt=PROMPT, regenerate="sound", **SPAN)


def test_span_masks_mark_the_frames_that_overlap_the_span():
    video = span_mask(video_frame_seconds(3, 8, 24.0), TimeSpan(0.4, 0.6), tokens_per_frame=2)
    assert video[0, :, 0].tolist() == [0, 0, 0, 0, 1, 1]
    # Audio latent frame i covers [(4i - 3) / 100, (4i + 1) / 100) s (the reference's causal timings).
    seconds = audio_frame_seconds(20, 4, 160, 16000)
    assert seconds[0].tolist() == [0.0, 0.01] and seconds[1].tolist() == pytest.approx([0.01, 0.05])
    audio = span_mask(seconds, TimeSpan(0.4, 0.6), tokens_per_frame=1)[0, :, 0]
    assert audio.nonzero().flatten().tolist() == list(range(10, 16))


def test_a_clip_without_sound_is_refused_before_it_is_decoded(pipe, tmp_path):
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(17):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ValueError, match=r"^`video` has no sound track; .*video to audio first"):
        pipe(video=path, prompt=PROMPT, **SPAN)
