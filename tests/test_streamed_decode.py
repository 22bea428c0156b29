"""The final decode streamed over time into the mp4 encoder: the same frames as the whole decode, a whole file."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTX2Video

from ltx_pipeline import loading
from ltx_pipeline.media import probe_mp4, save_output
from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage
from ltx_pipeline.pipeline_ti2vid_two_stages import TI2VidTwoStagesPipeline
from ltx_pipeline.speed.streamed_decode import can_stream, decode_streamed
from ltx_pipeline.streamed_write import write_while_decoding
from ltx_pipeline.types import Audio

SMALL = {"prompt": "a drum is struck in a small room", "height": 64, "width": 64, "num_frames": 17, "seed": 0}


def decoder_with_2_3_layout(**changes) -> AutoencoderKLLTX2Video:
    """The LTX-2.3 decoder's layers (4 up blocks, their strides and depths) with few channels."""
    config = dict(loading.FULL_SIZE_PRESETS["2.3"]["vae"])
    config |= {"latent_channels": 8, "block_out_channels": (8,) * 4, "decoder_block_out_channels": (8, 16, 16, 32)}
    torch.manual_seed(0)
    return AutoencoderKLLTX2Video(**(config | changes)).eval()


@pytest.mark.parametrize(
    ("changes", "latent_frames", "chunk"),
    [
        ({}, 16, 2),  # 121 frames, the pipelines' chunk
        ({}, 16, 5),
        ({"timestep_conditioning": True, "upsample_residual": (True,) * 4}, 7, 1),
        ({"decoder_causal": True}, 4, 1),
    ],
)
def test_streamed_decode_equals_the_whole_decode(changes, latent_frames, chunk):
    vae = decoder_with_2_3_layout(**changes)
    latents = torch.randn(1, 8, latent_frames, 2, 3, generator=torch.Generator().manual_seed(1))
    timestep = torch.full((1,), 0.05) if vae.config.timestep_conditioning else None
    with torch.no_grad():
        whole = vae.decoder(latents, timestep)
        chunks = list(decode_streamed(vae.decoder, latents, timestep, chunk_latent_frames=chunk))
    assert len(chunks) > 1
    streamed = torch.cat(chunks, dim=2)
    assert streamed.shape == whole.shape == (1, 3, 1 + 8 * (latent_frames - 1), 64, 96)
    # The same operations on the same values; only float32 summation order inside a convolution may differ.
    assert float((streamed - whole).abs().max()) < 1e-4 * float(whole.abs().max())


def test_a_decoder_with_noise_injection_is_not_streamed():
    vae = decoder_with_2_3_layout(decoder_inject_noise=(True,) * 5)
    assert not can_stream(vae.decoder)
    with pytest.raises(ValueError, match="cannot be streamed"):
        next(decode_streamed(vae.decoder, torch.zeros(1, 8, 2, 2, 3)))


def test_writer_encodes_every_chunk_with_its_sound(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (count, 32, 48, 3), dtype=np.uint8) for count in (9, 16, 16)]
    audio = Audio(torch.from_numpy(rng.uniform(-0.5, 0.5, (2, 44100 * 41 // 24)).astype(np.float32)), 44100)
    written = write_while_decoding(tmp_path / "clip.mp4", iter(chunks), audio, 24.0, 41)
    assert np.array_equal(written.frames, np.concatenate(chunks))
    assert written.finish_after_decode_s >= 0
    info = probe_mp4(tmp_path / "clip.mp4")
    assert (info.num_frames, info.width, info.height, info.audio_channels) == (41, 48, 32, 2)
    assert info.audio_duration_s == pytest.approx(41 / 24, abs=1 / 44100)
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]  # no partial file left


def test_writer_leaves_nothing_when_the_decoder_makes_too_few_frames(tmp_path):
    chunks = [np.zeros((9, 32, 48, 3), dtype=np.uint8)]
    audio = Audio(torch.zeros(1, 44100 * 17 // 24), 44100)
    with pytest.raises(ValueError, match="made 9 frames where 17"):
        write_while_decoding(tmp_path / "clip.mp4", iter(chunks), audio, 24.0, 17)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pipeline", [TI2VidTwoStagesPipeline, A2VidPipelineTwoStage])
def test_pipeline_writes_the_mp4_while_decoding(tiny_components, tmp_path, pipeline):
    pipe = pipeline(**tiny_components)
    extra = {}
    if pipeline is A2VidPipelineTwoStage:
        extra["audio"] = Audio(torch.linspace(-0.5, 0.5, 2 * 44100).reshape(2, -1), 44100)
    plain = pipe(**SMALL, **extra)
    path = tmp_path / "out.mp4"
    streamed = pipe(**SMALL, **extra, output_path=path)
    assert streamed.written_mp4 == path
    assert np.abs(streamed.frames.astype(int) - plain.frames.astype(int)).max() <= 1
    assert "mp4_after_decode" in streamed.recipe["timings_s"]
    info = probe_mp4(path)
    assert (info.num_frames, info.width, info.height) == (17, 64, 64)
    assert info.audio_sample_rate == streamed.audio.sampling_rate
    mp4_path, json_path = save_output(streamed, path)  # the file is there: only the recipe is written
    assert (mp4_path, json_path.suffix) == (path, ".json")
    copy_path, _ = save_output(streamed, tmp_path / "copy.mp4")
    assert copy_path.read_bytes() == path.read_bytes()


def test_output_path_must_be_an_mp4(tiny_components):
    pipe = TI2VidTwoStagesPipeline(**tiny_components)
    with pytest.raises(ValueError, match="`output_path` must be a file name ending in .mp4; got 'out.mov'"):
        pipe.stream(**SMALL, output_path="out.mov")


def test_a_decode_with_nan_is_an_error_and_leaves_no_file(tiny_components, tmp_path):
    pipe = TI2VidTwoStagesPipeline(**tiny_components)
    latents = torch.randn(1, pipe.vae.config.latent_channels, 3, 2, 2)
    latents[:, :, -1] = float("nan")  # the last chunk only: earlier chunks reach the encoder first
    audio = Audio(torch.zeros(1, 17 * 44100 // 24), 44100)
    with pytest.raises(ValueError, match="NaN or Inf"):
        pipe.decode_video_to_mp4(latents, audio, 24.0, tmp_path / "out.mp4", {})
    assert list(tmp_path.iterdir()) == []


def test_chunks_are_handed_over_as_the_whole_conversion_makes_them_and_nan_stops_before_the_last():
    from ltx_pipeline.pipeline_common import _frames_one_chunk_behind, _video_to_uint8

    videos = [torch.rand(1, 3, count, 8, 12) * 2 - 1 for count in (9, 8, 8)]
    handed = list(_frames_one_chunk_behind(iter(videos)))
    assert [frames.shape for frames in handed] == [(9, 8, 12, 3), (8, 8, 12, 3), (8, 8, 12, 3)]
    assert all(np.array_equal(frames, _video_to_uint8(video[0])) for frames, video in zip(handed, videos, strict=True))
    videos[1][0, 0, 0, 0, 0] = float("inf")
    chunks = _frames_one_chunk_behind(iter(videos))
    assert len([next(chunks), next(chunks)]) == 2  # the first two are handed over before the last is decoded
    with pytest.raises(ValueError, match="NaN or Inf"):
        next(chunks)


def test_warm_up_generates_once_at_the_size_given_and_only_for_compiled_options(tiny_components):
    from ltx_pipeline.speed.acceleration import SpeedOptions
    from ltx_pipeline.speed.warmup import needs_warm_up, warm_up

    done = warm_up(TI2VidTwoStagesPipeline(**tiny_components), 64, 64, 9, 24.0)
    assert done.num_frames == 9 and done.seconds > 0
    assert [needs_warm_up(SpeedOptions(**options)) for options in ({}, {"fp8": True}, {"forward_graph": True})] == [
        False,
        False,
        True,
    ]
