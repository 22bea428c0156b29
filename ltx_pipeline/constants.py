"""Every tuned number of the product, named, with its unit and where it came from."""

# --- Sampling schedules (reference: ltx_pipelines/utils/constants.py) ---------------------------------------------
# Distilled stage-1 sigmas (noise level, 1.0 = pure noise), from the reference implementation.
DISTILLED_STAGE_1_SIGMAS: tuple[float, ...] = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
# Distilled stage-2 sigmas: stage 2 starts from the upsampled stage-1 latents noised to 0.909375.
DISTILLED_STAGE_2_SIGMAS: tuple[float, ...] = (0.909375, 0.725, 0.421875, 0.0)

# Dev-model schedule (reference ltx_core LTX2Scheduler): linspace(1, 0, steps + 1), shifted by a token-count
# dependent amount, then stretched so the last non-zero sigma is `DEV_TERMINAL_SIGMA`.
DEV_NUM_INFERENCE_STEPS = 30  # LTX-2.3 dev; 2.0 used 40
DEV_BASE_SHIFT = 0.95
DEV_MAX_SHIFT = 2.05
DEV_SHIFT_BASE_TOKENS = 1024
DEV_SHIFT_MAX_TOKENS = 4096  # the reference pipelines call the scheduler without a latent, so this count is used
DEV_TERMINAL_SIGMA = 0.1

# --- Guidance defaults for the dev checkpoint (reference LTX-2.3 MultiModalGuiderParams) ---------------------------
VIDEO_CFG_SCALE = 3.0
AUDIO_CFG_SCALE = 7.0
STG_SCALE = 1.0  # both modalities
RESCALE_SCALE = 0.7  # both modalities
MODALITY_SCALE = 3.0  # both modalities; > 1 adds a pass with cross-modal attention off, which tightens sync
STG_BLOCKS_2_3: tuple[int, ...] = (28,)  # LTX-2.3, 48 blocks
STG_BLOCKS_2_0: tuple[int, ...] = (29,)  # LTX-2.0
MAX_GUIDANCE_SCALE = 20.0  # upper bound accepted for any guidance scale; beyond it outputs saturate

# --- Video geometry -----------------------------------------------------------------------------------------------
VIDEO_TEMPORAL_COMPRESSION = 8  # pixel frames per latent frame (after the first)
TWO_STAGE_SIZE_MULTIPLE = 64  # px; stage 1 runs at half size on the VAE's 32 px grid
ONE_STAGE_SIZE_MULTIPLE = 32  # px
DEFAULT_NUM_FRAMES = 121
DEFAULT_FRAME_RATE = 24.0  # frames per second
DEFAULT_HEIGHT = 512  # px, two-stage output (stage 1 at 256)
DEFAULT_WIDTH = 768
DEFAULT_SEED = 10  # reference default
MAX_FRAME_RATE = 60.0
MIN_FRAME_RATE = 1.0
MIN_NUM_FRAMES = 1 + VIDEO_TEMPORAL_COMPRESSION  # the shortest clip (one latent frame after the first)
# --- Work per job (limits.py): height x width x num_frames, refused above these before any work -------------------
MIN_PIXEL_FRAMES = TWO_STAGE_SIZE_MULTIPLE * TWO_STAGE_SIZE_MULTIPLE * MIN_NUM_FRAMES  # the smallest clip
# The embedded model on a 2-core CPU: 128 x 128 x 97 in ~5 s; 256 x 256 x 121 took over 26 s for half of stage 1
# alone (measured here, shared cores), so one such job would hold a CPU server for minutes.
CPU_MAX_PIXEL_FRAMES = 128 * 128 * 257
GPU_MAX_PIXEL_FRAMES = 1920 * 1088 * 257  # the reference's largest clip (1080p, 257 frames)

# --- Audio front end (reference AudioProcessor) ----------------------------------------------------------------
AUDIO_SAMPLE_RATE = 16_000  # Hz, what the audio VAE consumes
MEL_N_FFT = 1024  # samples
MEL_WIN_LENGTH = 1024  # samples, Hann window
MEL_HOP_LENGTH = 160  # samples: 100 mel frames per second
MEL_F_MIN = 0.0  # Hz
MEL_F_MAX = 8_000.0  # Hz
MEL_BINS = 64
MEL_LOG_FLOOR = 1e-5  # log(clamp(mel, floor))
AUDIO_LATENTS_PER_SECOND = 25  # 16000 / 160 / 4
# Audio latent frames decoded past the end, copies of the last one, then trimmed: the causal audio VAE decodes 3 mel
# frames (30 ms) short of the latent span, and the vocoder's last few milliseconds see its zero padding, a click at
# the end (+12 dB over the last 10 ms of the embedded model's decodes); both then fall past the clip's end. 3 frames
# (120 ms) cover the vocoder's reach on the embedded model (its output moves only in its last 50-100 ms).
AUDIO_DECODE_TAIL_LATENT_FRAMES = 3
AUDIO_VAE_CHANNELS = 2  # the audio VAE expects stereo mel input

# --- Prompts ------------------------------------------------------------------------------------------------------
MAX_PROMPT_CHARS = 4_000
MAX_SEQUENCE_LENGTH = 1024  # Gemma tokens per prompt, reference default
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, "
    "grainy texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, "
    "deformed facial features, asymmetrical face, missing facial features, extra limbs, disfigured hands, "
    "wrong hand count, artifacts around text, inconsistent perspective, camera shake, incorrect depth of field, "
    "background too sharp, background clutter, distracting reflections, harsh shadows, inconsistent lighting "
    "direction, color banding, cartoonish rendering, 3D CGI look, unrealistic materials, uncanny valley effect, "
    "incorrect ethnicity, wrong gender, exaggerated expressions, wrong gaze direction, mismatched lip sync, "
    "silent or muted audio, distorted voice, robotic voice, echo, background noise, off-sync audio, "
    "incorrect dialogue, added dialogue, repetitive speech, jittery movement, awkward pauses, incorrect timing, "
    "unnatural transitions, inconsistent framing, tilted camera, flat lighting, inconsistent tone, "
    "cinematic oversaturation, stylized filters, or AI artifacts."
)

# --- Output -----------------------------------------------------------------------------------------------------
MP4_VIDEO_CODEC = "libx264"  # reference output: H.264 yuv420p
# Lossless audio in the mp4 (Chromium, Firefox and FFmpeg play FLAC in MP4): the user's clip is kept sample for sample,
# at its own rate and channel count (AAC decoded to correlation 0.89-0.9999 with the input and mixed 8 channels to 2).
MP4_AUDIO_CODEC = "flac"
# FLAC's channel layouts by channel count (FFmpeg's defaults); more channels than this are mixed to stereo.
MP4_AUDIO_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
MP4_AUDIO_INT16_SCALE = 32768  # float [-1, 1) <-> 16-bit PCM, as libsndfile and FFmpeg convert
MP4_AUDIO_INT24_SCALE = 2**31  # float <-> FLAC's 24-bit samples, carried in the top 24 bits of int32
MP4_CRF = 18  # x264 constant rate factor for final outputs
# x264 speed preset. "veryfast" encodes 2-4x faster than x264's default "medium" at the same CRF, for files of about
# the same size: 121 frames of 768x512 took 0.95 s vs 1.83 s (smooth motion) and 3.9 s vs 14.6 s (noise) on 2 CPU
# cores; on the 16 cores of an H200 machine, random-weight (noise) output took 1.5-2.1 s vs 3.9-4.3 s, longer than
# the whole compiled generation.
MP4_PRESET = "veryfast"
# Latent frames each layer of the video decoder takes at once when the final decode streams its frames to the mp4
# encoder (speed/streamed_decode.py): 2 latent frames are 16 output frames at LTX-2's 8x, a chunk of frames the
# encoder can start on early, in 8 chunks for 121 frames. Any value gives the same frames.
DECODE_CHUNK_LATENT_FRAMES = 2
# Threads converting the RGB frames to yuv420p (FFmpeg's swscale, which runs without Python's GIL) ahead of the
# encoder, at most. Done on the encoding thread, the conversion is serial work that keeps x264's threads waiting:
# 121 frames of 768x512 took 0.64 -> 0.24 s (smooth motion) and 0.84 -> 0.72 s (noise) on the 16 cores of an H200
# machine with it done ahead (benchmarks/bench_mp4_write.py, RESULTS.md).
MP4_CONVERSION_THREADS_MAX = 8

# --- Hub ids and file names users point the product at ------------------------------------------------------------
HUB_DIFFUSERS_REPO = "diffusers/LTX-2.3-Diffusers"
HUB_OFFICIAL_REPO = "Lightricks/LTX-2.3"
OFFICIAL_DISTILLED_FILE = "ltx-2.3-22b-distilled.safetensors"
OFFICIAL_DEV_FILE = "ltx-2.3-22b-dev.safetensors"
OFFICIAL_SPATIAL_UPSAMPLER_FILE = "ltx-2.3-spatial-upscaler-x2-1.0.safetensors"
OFFICIAL_TEXT_ENCODER_REPO = "google/gemma-3-12b-it-qat-q4_0-unquantized"
EMBEDDED_MODEL_NAME = "embedded"  # `--model embedded` picks the model that ships in the repo

# --- Audio input and resampling (audio.py) ---------------------------------------------------------------------------
# Windowed-sinc resampler: torchaudio.functional.resample's defaults, which the reference AudioProcessor uses.
RESAMPLE_LOWPASS_FILTER_WIDTH = 6  # zero crossings of the sinc on each side of the kernel centre
RESAMPLE_ROLLOFF = 0.99  # low-pass cutoff as a fraction of the lower of the two Nyquist frequencies
# The polyphase kernel has (target / gcd) x (source / gcd + taps) entries: fine for real rates (44.1 -> 16 kHz:
# 76,000), huge for near-coprime ones (44,099 -> 16,000 Hz: 700 million). Refuse rather than exhaust memory.
RESAMPLE_MAX_KERNEL_ELEMENTS = 2**24
# A centred STFT reflect-pads n_fft / 2 samples on each side, which needs more samples than that to reflect.
AUDIO_VAE_MIN_SAMPLES = MEL_N_FFT // 2 + 1  # samples at AUDIO_SAMPLE_RATE (about 32 ms)
# float seconds x sample rate lands a hair off an integer (57 / 25 x 48000 = 109439.99999999999): count within
# this many samples of an integer as that integer before flooring.
SAMPLE_COUNT_TOLERANCE = 1e-6  # samples

# Frame rates become exact fractions for the container: 24.0 -> 24/1, 23.976 -> 2997/125, 30000/1001 stays itself.
FRAME_RATE_MAX_DENOMINATOR = 1_000_000

# --- Speed and memory options (ltx_pipeline/acceleration.py) -------------------------------------------------------
# fp8 products: torch._scaled_mm needs both matrix dimensions of the weight to be multiples of 16 (cuBLASLt fp8).
FP8_FEATURE_MULTIPLE = 16
# Smallest amax used to derive an fp8 scale, so an all-zero row or tensor gets a finite scale (unitless).
FP8_MIN_AMAX = 1e-12
# Whole-forward CUDA graphs (forward_graphs.py) kept per transformer: call signatures seen in turn, e.g. two stages x
# (conditional, perturbed, isolated) passes x a few sizes; the oldest is dropped past this.
FORWARD_GRAPHS_KEPT = 16
# The attribute where a speed option installs its own runner of a transformer's forward (the engine looks it up,
# so it never imports the speed package): an object with `loop_state(transformer)` and `(transformer, state, kwargs)`.
FORWARD_RUNNER_ATTRIBUTE = "_ltx_forward_runner"
# Linear layers kept in bf16 when the transformer runs fp8 products: the per-head attention gates (LTX-2.3
# `to_gate_logits`, width = number of heads: negligible FLOPs, and they scale whole heads), and every layer whose
# input is the audio stream (~126 tokens for 5 s), where quantizing the activations costs about what the fp8 product
# saves. Measured on an H200 (compiled, fp8 row-wise): 384x256x121 148.7 ms with them in fp8, 115.0 ms without;
# 768x512x121 293.6 vs 286.9 ms (benchmarks/RESULTS.md, runs 1 and 3).
FP8_SKIP_LINEAR_SUFFIXES: tuple[str, ...] = ("to_gate_logits",)
FP8_SKIP_LINEAR_PARTS: tuple[str, ...] = (
    "audio_attn1.",
    "audio_attn2.",
    "audio_ff.",
    "video_to_audio_attn.to_q",  # audio queries
    "video_to_audio_attn.to_out",
    "audio_to_video_attn.to_k",  # audio keys and values
    "audio_to_video_attn.to_v",
)
# Module-name patterns never stored in fp8 by the "fp8-storage", "24gb" and "16gb" modes for models without diffusers'
# own skip list (the Gemma text encoder): norms, embeddings (lm_head shares the token embedding), the vision tower.
FP8_STORAGE_SKIP_PATTERNS: tuple[str, ...] = ("norm", "embed", "lm_head", "vision_tower", "multi_modal_projector")
# Where torch.compile's caches are kept (speed/compile_cache.py; `LTX_COMPILE_CACHE_DIR` overrides): a folder that
# outlives the process and /tmp, so a restart loads compiled blocks instead of compiling them again.
COMPILE_CACHE_DIR = "~/.cache/ltx_pipeline/torch_compile"
# The prompt of the studio's warm-up generation (speed/warmup.py), which compiles the fast path at start; its clip is
# discarded. Words the embedded model knows, so that it runs on every model.
WARM_UP_PROMPT = "a red ball bounces"
# "16gb" mode: transformer blocks streamed to the GPU per group where the device has no streams to prefetch on
# (one transfer per group, waited for). On a CUDA GPU each block is its own group, the next prefetched on a side
# stream while the current one computes (diffusers' streamed offloading takes one block per group): at fp8 storage
# one LTX-2.3 block holds ~0.37 GiB, so ~0.75 GiB of transformer weights are on the GPU at a time.
OFFLOAD_TRANSFORMER_BLOCKS_PER_GROUP = 4

# --- Checkpoint loading (ltx_pipeline/loading.py) ----------------------------------------------------------------
HUB_OFFICIAL_REPO_2_0 = "Lightricks/LTX-2"  # LTX-2.0 single files and a diffusers-format layout in one repo
OFFICIAL_SPATIAL_UPSAMPLER_FILE_2_0 = "ltx-2-spatial-upscaler-x2-1.0.safetensors"
EMBEDDED_MODEL_LABEL = "embedded LTX-2.3-architecture model shipped with this repo"
# Default scheduler for checkpoints that carry none (single files): the reference dev schedule's token-dependent
# shift, expressed in FlowMatchEulerDiscreteScheduler's terms with the numbers above.
SCHEDULER_CONFIG: dict[str, object] = {
    "use_dynamic_shifting": True,
    "base_shift": DEV_BASE_SHIFT,
    "max_shift": DEV_MAX_SHIFT,
    "base_image_seq_len": DEV_SHIFT_BASE_TOKENS,
    "max_image_seq_len": DEV_SHIFT_MAX_TOKENS,
    "shift_terminal": DEV_TERMINAL_SIGMA,
}

# --- Image conditioning (issue: the "I" in TI2Vid) -----------------------------------------------------------
# H.264 CRF applied to a conditioning still so it matches the video statistics the model was trained on
# (reference `media_io.preprocess`, default 33 for Gemma-3 generations; diffusers' DEFAULT_IMAGE_CRF).
IMAGE_CONDITIONING_CRF = 33
# A conditioning image whose aspect ratio differs from the clip's by more than this fraction is called out
# (it is still resized to cover the frame and centre-cropped, as the reference does).
IMAGE_ASPECT_NOTICE = 0.05

# --- LoRAs (ltx_pipeline/lora.py) ----------------------------------------------------------------------------------
# A LoRA layer adds strength x B @ A (reference ltx-core `fuse_loras`); the reference's default strength.
DEFAULT_LORA_STRENGTH = 1.0
# Accepted strengths: 0 switches a LoRA off; LTX LoRAs are trained for 1 and ComfyUI users go up to about 2, past
# which outputs break down. Negative strengths (subtracting a LoRA) are not offered.
MIN_LORA_STRENGTH = 0.0
MAX_LORA_STRENGTH = 2.0
# The official distilled LoRA the dev checkpoint's two-stage path applies in stage 2 only (reference
# ti2vid_two_stages.py / a2vid_two_stage.py), at the reference's default strength.
OFFICIAL_DISTILLED_LORA_FILE = "ltx-2.3-22b-distilled-lora-384.safetensors"
OFFICIAL_DISTILLED_LORA_FILE_2_0 = "ltx-2-19b-distilled-lora-384.safetensors"
DISTILLED_LORA_STRENGTH = 1.0

# --- Retake -----------------------------------------------------------------------------------------------------------
RETAKE_CROSSFADE_S = 0.01  # s: the regenerated audio fades in and out over this much just inside the span's edges

# --- Long form: chained windows (ltx_pipeline/long_form.py, issue 26) ------------------------------------------------
# Latent frames each window holds clean from the end of the one before: 2 latent frames are 9 pixel frames (0.375 s
# at 24 fps), the first frame and one 8-frame group, so the model sees where things are and how they move.
LONG_FORM_OVERLAP_LATENT_FRAMES = 2
# How a window's held latents are made from the window before: "copy" takes its last K latents as they are (latent 0
# then held 8 frames and is read as one); "reencode" encodes the last 8(K-1)+1 frames it decoded again (at each
# stage's size), so latent 0 is a true one-frame first latent. "copy" is the default: on the embedded model
# "reencode" was no better for sync or seams (benchmarks/RESULTS_LONG_FORM.md, 2026-12-07) and costs a VAE encode
# per stage per window.
LONG_FORM_SEAMS = ("copy", "reencode")
LONG_FORM_SEAM = "copy"
# How firmly those held latents are kept: 1 exactly (as a still at strength 1); lower lets the model repaint them
# (0.5 was no better on the embedded model: RESULTS_LONG_FORM.md).
LONG_FORM_HELD_STRENGTH = 1.0
# An audio file longer than this is refused by audio-to-video long form (the input is held in memory: 23 MB a minute
# at 48 kHz stereo float32).
LONG_FORM_MAX_AUDIO_DURATION_S = 600.0  # s, 10 min
# The lowest such limit a caller or a studio may set: below a second no long run is possible.
LONG_FORM_MIN_AUDIO_LIMIT_S = 1.0  # s
# Generated audio (text to audio+video) crosses from one window's sound to the next's over this much, just before
# the seam: both windows decoded the same held latents there, so the fade only hides the decoders' edge differences.
LONG_FORM_AUDIO_CROSSFADE_S = 0.01  # s
# Free disk space asked for before a long run writes: H.264 at CRF 18 "veryfast" stays under 1 bit per pixel for
# smooth content (the embedded model's 128x128 clips: ~0.2); noise (random weights) can reach ~4. Plus the sound at
# LONG_FORM_DISK_AUDIO_BITS_PER_SECOND, plus a fixed margin for the recipe and the container.
LONG_FORM_DISK_BITS_PER_PIXEL = 1.0
LONG_FORM_DISK_MARGIN_BYTES = 16 * 2**20
# Disk needed for a long run's sound: uncompressed stereo 48 kHz 24-bit PCM, which the lossless FLAC never exceeds.
LONG_FORM_DISK_AUDIO_BITS_PER_SECOND = 48_000 * 2 * 24
