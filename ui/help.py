"""Pure helpers behind the page's hints and menus: frame-count choices, resolution presets, prompt and audio advice.

Nothing here touches gradio or a model, so each piece is tested as a plain function.
"""

import math
import re

from ltx_pipeline import validation

MAX_MENU_FRAMES = 257  # longest clip the frame-count menu offers (10.7 s at 24 fps); the API accepts any 8k+1

# (label, "WIDTHxHEIGHT"): two-stage sizes are multiples of 64 px. The small ones exist for the embedded model
# and for quick drafts; the reference default is 768 x 512 (stage 1 at 384 x 256).
RESOLUTION_PRESETS: tuple[tuple[str, str], ...] = (
    ("768 x 512 - landscape 3:2 (reference default)", "768x512"),
    ("512 x 768 - portrait 2:3", "512x768"),
    ("1024 x 576 - landscape 16:9", "1024x576"),
    ("576 x 1024 - portrait 9:16", "576x1024"),
    ("640 x 640 - square", "640x640"),
    ("1536 x 1024 - landscape 3:2, large", "1536x1024"),
    ("256 x 256 - quick draft", "256x256"),
    ("128 x 128 - tiny draft", "128x128"),
    ("64 x 64 - smoke test", "64x64"),
)
REAL_WEIGHTS_ONLY = " - real weights only"
# What the page calls each argument the checks name, for messages in the page's words.
PAGE_LABELS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "num_frames": "Length",
    "frame_rate": "Frame rate (fps)",
    "resolution": "Resolution",
    "height": "Resolution (height)",
    "width": "Resolution (width)",
    "seed": "Seed",
    "mode": "Mode",
    "num_inference_steps": "Steps",
    "modality_scale": "Modality scale",
    "image": "Image",
    "images": "Image",
    "image_strength": "Image strength",
    "strength": "Image strength",
    "image_frame_index": "Frame index",
    "frame_index": "Frame index",
    "audio": "Your audio",
    "audio_start_time": "Start at (s)",
    "pad_audio": "Pad a short clip with silence",
    **{f"lora_{slot}": f"LoRA {slot}" for slot in (1, 2, 3)},
    **{f"lora_{slot}_strength": f"LoRA {slot} strength" for slot in (1, 2, 3)},
    "video": "Your video",
    "fit": "Fit to the model's size",
    "start_time": "From (s)",
    "end_time": "To (s)",
    "regenerate": "Regenerate",
    "duration_s": "Length (s)",
    "prompt_timeline": "Prompt timeline",
    "window_frames": "Length",
}
# The API's parameter names, where a check names an argument the endpoints do not have.
API_NAMES = {
    "height": "resolution (height)",
    "width": "resolution (width)",
    "images": "image",
    "frame_index": "image_frame_index",
    "strength": "image_strength",
    "window_frames": "num_frames",
}  # marks the sizes a small model was never trained at

# Words that show a prompt describes sound; a prompt with none of them gets a hint.
SOUND_WORDS = (
    "sound noise noisy audio hear heard listen loud loudly quiet quietly soft softly silent silence music musical "
    "melody song sing sings sang singer hum whistle voice speak speaks spoke says said say talk whisper shout yell "
    "scream laugh cry cries sob sigh breathe breath bark meow chirp tweet roar growl buzz hiss rustle crackle pop "
    "bang boom thud thump clank clang clink clatter click tick tock knock tap ring rang chime bell beep honk horn "
    "siren engine rumble splash drip patter gurgle babble echo reverb ambience ambient drum drums guitar piano "
    "violin bass beat rhythm tempo chatter crowd applause footstep footsteps crunch creak squeak screech wind rain "
    "thunder waves crash snap sizzle clap murmur dialogue narrates narrator tone pitch volume"
).split()
# A sound word, plus the common English endings ("rings", "ringing", "rustled"), as a whole word.
SOUND_WORD_PATTERN = re.compile(
    r"\b(?:" + "|".join(SOUND_WORDS) + r")(?:s|es|d|ed|ing|ling|ming|ping|ging|ning|er|ers|y|ly)?\b", re.IGNORECASE
)

SOUND_HINT = (
    "Your prompt does not describe any sound yet. LTX-2.3 makes the audio from the same prompt: name the "
    "**source** (a ball, a voice, rain), the **material** it hits (wood, metal, glass) and the **space** it "
    'sounds in (a small room, a large echoing hall), e.g. *"each bounce is a sharp hollow thud that echoes off '
    'the high ceiling"*. Quote dialogue in double quotes.'
)


# What the page says beside an LTX-2.5 model's name (README "LTX-2.5 or LTX-2.3: which suits what").
LTX_2_5_NOTE = (
    "For audio to video with speech, users report that LTX-2.3 follows the clip's lips more closely; "
    "*Length from the prompt* lets the model pick a text-to-video clip's length."
)


def format_frame_count(num_frames: int, frame_rate: float) -> str:
    """'97 frames - 3.88 s at 25 fps'."""
    return f"{num_frames} frames - {num_frames / frame_rate:.2f} s at {frame_rate:g} fps"


def frame_count_choices(frame_rate: float, limit: int = MAX_MENU_FRAMES) -> list[tuple[str, int]]:
    """(label, value) pairs for the frame-count menu; labels carry the duration at `frame_rate`."""
    validation.check_frame_rate(frame_rate)
    return [(format_frame_count(count, frame_rate), count) for count in validation.valid_frame_counts(limit)]


FRAME_COUNT_INFO = "Valid counts are 8k+1 frames"


def frame_rate_note(frame_rate: float, known_rates: tuple[float, ...] | None) -> str:
    """Which frame rates the model was trained at, when `frame_rate` is not one of them; '' for a rate it knows or a
    model trained at any rate (None)."""
    if known_rates is None or any(abs(frame_rate - rate) < 1e-6 for rate in known_rates):
        return ""
    rates = ", ".join(f"{rate:g}" for rate in known_rates)
    return (
        f"This model was trained at {rates} fps only: at {frame_rate:g} fps its clips may not follow the sound "
        "(audio to video sees fewer of the clip's beats)."
    )


# The same advice in the embedded model's own words (the bouncing-ball world's captions).
SMALL_MODEL_SOUND_HINT = (
    "Your prompt does not describe any sound yet. This model makes the audio from the same prompt: name the "
    "**floor** the ball hits (wood, metal, glass) and the **room** it sounds in (a small bright room, a large dark "
    'hall), and the sound, e.g. *"ringing clanks with long echoes"* or *"hollow knocks with short echoes"*.'
)


def sound_hint(prompt: str, small_vocabulary: bool = False) -> str:
    """A gentle hint when a non-empty prompt has no sound words ('' otherwise), in the words the model knows."""
    if not prompt or not prompt.strip() or SOUND_WORD_PATTERN.search(prompt):
        return ""
    return SMALL_MODEL_SOUND_HINT if small_vocabulary else SOUND_HINT


def resolution_choices(model_sizes: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """The resolution menu: the model's own sizes first; the others marked "real weights only" where the model
    was trained at a few sizes (they run, but it never learned them)."""
    if model_sizes is None:
        return list(RESOLUTION_PRESETS)
    own = [(label, value) for label, value in RESOLUTION_PRESETS if value in model_sizes]
    others = [(label + REAL_WEIGHTS_ONLY, value) for label, value in RESOLUTION_PRESETS if value not in model_sizes]
    return own + others


def unknown_words_hint(unknown_words: list[str], known_words: list[str] | None = None) -> str:
    """A note naming the prompt words a small-vocabulary model will ignore; '' when there are none."""
    if not unknown_words:
        return ""
    note = f"This model does not know these words and will ignore them: *{', '.join(unknown_words)}*."
    if known_words:
        note += f" It knows: {', '.join(known_words)}."
    return note


def parse_resolution(resolution: str) -> tuple[int, int]:
    """'768x512' (or a preset label) -> (height, width); sizes are checked by the pipeline, not here."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(resolution))
    if match is None:
        valid = ", ".join(repr(value) for _, value in RESOLUTION_PRESETS[:3])
        raise ValueError(f"`resolution` must be WIDTHxHEIGHT in pixels (e.g. {valid}); got {resolution!r}.")
    width, height = int(match.group(1)), int(match.group(2))
    return height, width


def whole_number(name: str, value: float | int | str | None) -> int:
    """A number from a widget or the API as an int; 97.0 is fine, 97.5 or 'abc' is an error, never rounded."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a whole number; got {value!r}.")
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a whole number; got {value!r}.") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"`{name}` must be a whole number; got {value!r}.")
    return int(number)


def real_number(name: str, value: float | int | str | None) -> float:
    """A number from a widget or the API as a float, with a clear error for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number; got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return number


def audio_duration_advice(
    clip_seconds: float, audio_start_time: float, num_frames: int, frame_rate: float
) -> tuple[str, int | None]:
    """What to tell a user whose clip does not match the chosen video length, and the frame count that would.

    Returns (markdown, suggested frame count or None when the choice already fits the clip).
    """
    available = clip_seconds - audio_start_time
    video_seconds = num_frames / frame_rate
    chosen = format_frame_count(num_frames, frame_rate)
    if available <= 0:
        return (
            f"The clip lasts {clip_seconds:.2f} s, so a start time of {audio_start_time:.2f} s leaves no audio. "
            "Set the start time inside the clip.",
            None,
        )
    minimum = validation.valid_frame_counts()[0]
    if available < minimum / frame_rate:
        return (
            f"From {audio_start_time:.2f} s the clip has only {available:.2f} s of audio; the shortest video is "
            f"{format_frame_count(minimum, frame_rate)}. Use a longer clip, an earlier start, or pad with silence.",
            None,
        )
    suggested = frames_fitting(available, frame_rate)
    if video_seconds > available + 1e-9:
        message = (
            f"The clip has {available:.2f} s of audio from {audio_start_time:.2f} s, shorter than the video "
            f"({chosen}). Choose **{format_frame_count(suggested, frame_rate)}** to match it, or pad the rest "
            "with silence."
        )
        return message, suggested
    longest = validation.valid_frame_counts(MAX_MENU_FRAMES)[-1]
    if available > longest / frame_rate:
        message = (
            f"The clip has {available:.2f} s of audio from {audio_start_time:.2f} s, more than the longest video "
            f"({format_frame_count(longest, frame_rate)}); the video ({chosen}) uses {audio_start_time:.2f} s to "
            f"{audio_start_time + video_seconds:.2f} s. Move the start time to pick another part."
        )
        return message, None
    if suggested != num_frames:
        message = (
            f"The clip has {available:.2f} s of audio from {audio_start_time:.2f} s; the video ({chosen}) uses "
            f"the first {video_seconds:.2f} s of it. **{format_frame_count(suggested, frame_rate)}** would use "
            "nearly all of it."
        )
        return message, suggested
    return f"The clip has {available:.2f} s of audio from {audio_start_time:.2f} s; {chosen} fits it.", None


def frames_fitting(seconds: float, frame_rate: float, limit: int = MAX_MENU_FRAMES) -> int:
    """The longest valid frame count (up to `limit`) whose video does not outlast `seconds` of audio."""
    counts = [count for count in validation.valid_frame_counts(limit) if count / frame_rate <= seconds + 1e-9]
    return counts[-1] if counts else validation.valid_frame_counts(limit)[0]
