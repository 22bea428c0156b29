import numpy as np
import PIL.Image
import pytest
import soundfile as sf
import torch

from ltx_pipeline import A2VidPipelineTwoStage, TI2VidTwoStagesPipeline
from ltx_pipeline.conditioning import ImageCondition, aspect_notice, prepare_image

SMALL = {"prompt": "a red ball on a wooden floor", "height": 64, "width": 64, "num_frames": 17, "seed": 3}


def two_colour_image(width=64, height=64) -> PIL.Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (230, 30, 30)
    pixels[:, width // 2 :] = (30, 30, 230)
    return PIL.Image.fromarray(pixels)


@pytest.fixture
def pipe(tiny_components):
    return TI2VidTwoStagesPipeline(**tiny_components)


def round_trip(pipe, image) -> np.ndarray:
    """The image as the video VAE reproduces it: the best a conditioned frame can do."""
    with torch.no_grad():
        latents = pipe.vae.encode(prepare_image(image, 64, 64)).latent_dist.mode()
        decoded = pipe.vae.decode(latents, return_dict=False)[0]
    return ((decoded[0, :, 0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()


def distance(frames: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((frames.astype(np.float64) - target) ** 2))


def test_first_frame_follows_the_image(pipe):
    image = two_colour_image()
    target = round_trip(pipe, image)
    plain = pipe(**SMALL)
    conditioned = pipe(**SMALL, images=[ImageCondition(image, frame_index=0, strength=1.0)])
    assert distance(conditioned.frames[0], target) < distance(plain.frames[0], target)
    assert conditioned.recipe["images"] == [
        {"image": "<in-memory image>", "frame_index": 0, "strength": 1.0, "notice": None}
    ]


def test_keyframe_is_held_as_tokens_of_its_own_at_its_frames_time(pipe):
    """A still at pixel frame 9 is appended to the clip's tokens at that frame's time (the reference's
    `VideoConditionByKeyframeIndex`): at every step of both stages the appended tokens are the image's latents, seen
    as clean (timestep 0) at positions 9/24 s to 17/24 s, while the clip's own tokens are all denoised; the output
    has the clip's frames only."""
    image = two_colour_image()
    seen = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (kwargs["hidden_states"].clone(), kwargs["timestep"].clone(), kwargs["video_coords"].clone())
        ),
        with_kwargs=True,
    )
    try:
        output = pipe(**SMALL, images=[ImageCondition(image, frame_index=9, strength=1.0)], frame_rate=24.0)
    finally:
        handle.remove()
    assert len(seen) == 11 and output.frames.shape[0] == 17
    for index, (hidden_states, timestep, coords) in enumerate(seen):
        size = 32 if index < 8 else 64  # stage 1 at half size
        tokens_per_frame = (size // pipe.vae.config.spatial_compression_ratio) ** 2
        clip_tokens = 3 * tokens_per_frame
        assert hidden_states.shape[1] == clip_tokens + tokens_per_frame
        with torch.no_grad():
            latents = pipe.vae.encode(prepare_image(image, size, size)).latent_dist.mode()
        torch.testing.assert_close(hidden_states[:, clip_tokens:], pipe.pack_video(latents), rtol=0, atol=1e-6)
        assert float(timestep[:, clip_tokens:].abs().max()) == 0.0
        assert float(timestep[:, :clip_tokens].min()) > 0
        torch.testing.assert_close(coords[0, 0, clip_tokens:], torch.tensor([[9 / 24, 17 / 24]] * tokens_per_frame))


def test_strength_zero_leaves_the_clip_unchanged(pipe):
    plain = pipe(**SMALL)
    zero = pipe(**SMALL, images=[ImageCondition(two_colour_image(), 0, 0.0)])
    assert np.abs(plain.frames.astype(int) - zero.frames.astype(int)).max() <= 1


def test_audio_to_video_takes_an_image_too(tiny_components, tmp_path):
    sf.write(tmp_path / "drum.wav", np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32), 16000)
    pipe = A2VidPipelineTwoStage(**tiny_components)
    image = two_colour_image()
    target = round_trip(pipe, image)
    plain = pipe(audio=tmp_path / "drum.wav", **SMALL)
    conditioned = pipe(audio=tmp_path / "drum.wav", images=[ImageCondition(image)], **SMALL)
    assert distance(conditioned.frames[0], target) < distance(plain.frames[0], target)


def test_wide_image_is_cropped_and_the_recipe_says_so(pipe, tmp_path):
    two_colour_image(width=256, height=64).save(tmp_path / "wide.png")
    output = pipe(**SMALL, images=[ImageCondition(tmp_path / "wide.png")])
    notice = output.recipe["images"][0]["notice"]
    assert "cropped at the left and right" in notice and "25% of it is kept" in notice
    assert aspect_notice(two_colour_image(), 64, 64) is None


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (ImageCondition("missing.png"), "`images[0].image` file not found: missing.png"),
        (
            ImageCondition(two_colour_image(), frame_index=17),
            "`images[0].frame_index` must be a frame of the clip, 0 to 16; got 17.",
        ),
        (ImageCondition(two_colour_image(), frame_index=-1), "`images[0].frame_index`"),
        (
            ImageCondition(two_colour_image(), strength=1.5),
            "`images[0].strength` must be a number from 0 to 1; got 1.5.",
        ),
        (
            ImageCondition(np.zeros((4, 4), dtype=np.uint8)),
            "`images[0].image` as an array must be (height, width, 3) uint8",
        ),
    ],
)
def test_bad_image_conditions_are_rejected_before_any_work(pipe, condition, message):
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        pipe.stream(**SMALL, images=[condition])
    assert message in str(error.value)


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n\x00\x00broken"])
def test_unreadable_image_files_are_named(pipe, tmp_path, content):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        pipe.stream(**SMALL, images=[ImageCondition(path)])
    assert "`images[0].image` photo.png is not a readable image" in str(error.value)
