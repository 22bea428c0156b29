"""The studio's one piece of mutable state: the loaded model, the pipelines lent to running jobs, the runs in flight.

Nothing about models or runs lives at module level; `app.py` builds one `StudioState` and hands it to the layout.
"""

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from ltx_pipeline import TI2VidTwoStagesPipeline, constants
from ltx_pipeline.acceleration import MemoryMode, SpeedOptions, place_pipeline

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"

TEXT_TO_AV = "text_to_av"
AUDIO_TO_VIDEO = "audio_to_video"
MODES = (TEXT_TO_AV, AUDIO_TO_VIDEO)


@dataclass(frozen=True)
class StudioConfig:
    """How the studio is served; `app.py` fills it from the command line and the environment."""

    model: str = constants.EMBEDDED_MODEL_NAME  # "embedded", a Hub id, a diffusers folder or a .safetensors file
    spatial_upsampler: str | None = None  # single-file models: the official upsampler file (default: from the Hub)
    text_encoder: str | None = None  # single-file models: Gemma-3 Hub id or folder (default: the reference one)
    device: str | None = None  # None: CUDA when available, else CPU
    memory_mode: str | None = None  # ltx_pipeline.acceleration.MemoryMode name; None: everything on `device`
    speed: SpeedOptions = SpeedOptions()  # regional compile, attention backend, fp8 products
    concurrency_limit: int = 1  # generations run at once (each holds its own schedulers; weights are shared)
    max_queue_size: int = 16  # jobs waiting beyond this are refused with "queue is full"
    max_file_size: str = "50mb"  # uploads above this are refused by the server before any handler runs
    output_dir: Path = REPO_ROOT / "outputs"

    def __post_init__(self) -> None:
        if self.memory_mode is not None:
            MemoryMode.from_name(self.memory_mode)
        if isinstance(self.concurrency_limit, bool) or not isinstance(self.concurrency_limit, int):
            raise ValueError(f"`concurrency_limit` must be a whole number >= 1; got {self.concurrency_limit!r}.")
        if self.concurrency_limit < 1:
            raise ValueError(f"`concurrency_limit` must be >= 1; got {self.concurrency_limit}.")
        if isinstance(self.max_queue_size, bool) or not isinstance(self.max_queue_size, int):
            raise ValueError(f"`max_queue_size` must be a whole number >= 1; got {self.max_queue_size!r}.")
        if self.max_queue_size < 1:
            raise ValueError(f"`max_queue_size` must be >= 1; got {self.max_queue_size}.")


@dataclass
class Run:
    """One generation in flight: which pipeline it holds, and whether its owner asked it to stop."""

    session: str
    mode: str
    pipeline: TI2VidTwoStagesPipeline
    stop_requested: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class PipelinePair:
    """Both modes over the same components: one slot of the pool."""

    text_to_av: TI2VidTwoStagesPipeline
    audio_to_video: "A2VidPipelineTwoStage"  # noqa: F821 - imported lazily, see `_audio_to_video_class`

    def for_mode(self, mode: str) -> TI2VidTwoStagesPipeline:
        return self.text_to_av if mode == TEXT_TO_AV else self.audio_to_video


def _audio_to_video_class() -> type:
    from ltx_pipeline.pipeline_a2vid_two_stage import A2VidPipelineTwoStage

    return A2VidPipelineTwoStage


class StudioState:
    """Loads the model once, lends one pipeline pair per concurrent job, and tracks runs so Stop finds its own."""

    def __init__(self, config: StudioConfig):
        self.config = config
        self._load_lock = threading.Lock()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._slots: queue.Queue[PipelinePair] = queue.Queue()
        self._runs_lock = threading.Lock()
        self._runs: dict[tuple[str, str], Run] = {}
        self.model_label = config.model
        self.prompt_vocabulary: frozenset[str] | None = None  # a small model's whole vocabulary; None: open
        self._unknown_words: Callable[[str], list[str]] = lambda prompt: []

    # ---- loading --------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Loads the model and fills the pool; idempotent and thread-safe. Raises what loading raised."""
        with self._load_lock:
            if self._loaded.is_set():
                return
            if self._load_error is not None:
                raise self._load_error
            try:
                base = self._load_base()
                self.model_label = base.model_label
                self._unknown_words = base.unknown_words
                self.prompt_vocabulary = base.prompt_vocabulary
                audio_to_video_class = _audio_to_video_class()
                for _ in range(self.config.concurrency_limit):
                    # Each slot gets its own pipeline objects (cancel flag, prompt cache) over the shared weights.
                    text_to_av = TI2VidTwoStagesPipeline.from_pipe(base)
                    self._slots.put(PipelinePair(text_to_av, audio_to_video_class.from_pipe(base)))
            except BaseException as error:
                self._load_error = error
                raise
            self._loaded.set()
            logger.info("Loaded %s on %s (%d slot(s))", self.model_label, self.device, self.config.concurrency_limit)

    def _load_base(self) -> TI2VidTwoStagesPipeline:
        """The model placed as the command line's `t2av` places it: bf16 on a GPU, float32 on the CPU."""
        config, device = self.config, self.device
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        base = TI2VidTwoStagesPipeline.from_model(
            config.model,
            spatial_upsampler=config.spatial_upsampler,
            text_encoder=config.text_encoder,
            torch_dtype=dtype,
        )
        # Memory modes and speed options act on the modules, so every pipeline made from `base` shares them.
        place_pipeline(base, device, config.memory_mode, config.speed)
        return base

    def start_loading(self) -> threading.Thread:
        """Loads in the background so the page opens at once; the first job waits for it."""
        thread = threading.Thread(target=self._load_quietly, name="model-loader", daemon=True)
        thread.start()
        return thread

    def _load_quietly(self) -> None:
        try:
            self.load()
        except Exception:
            logger.exception("Loading %r failed; every generation will report the error", self.config.model)

    @property
    def device(self) -> str:
        if self.config.device is not None:
            return self.config.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of `prompt` the loaded model does not know (none before loading, or for open-vocabulary models)."""
        return self._unknown_words(prompt)

    @property
    def load_error(self) -> BaseException | None:
        return self._load_error

    @property
    def is_loaded(self) -> bool:
        return self._loaded.is_set()

    @property
    def is_embedded(self) -> bool:
        return self.config.model == constants.EMBEDDED_MODEL_NAME

    # ---- runs -----------------------------------------------------------------------------------------------------

    @contextmanager
    def run(self, session: str, mode: str) -> Iterator[Run]:
        """Lends a pipeline for one job and registers the run so `stop(session, mode)` reaches it."""
        self.load()
        pair = self._slots.get()
        run = Run(session=session, mode=mode, pipeline=pair.for_mode(mode))
        with self._runs_lock:
            self._runs[(session, mode)] = run
        try:
            yield run
        finally:
            with self._runs_lock:
                if self._runs.get((session, mode)) is run:
                    del self._runs[(session, mode)]
            self._slots.put(pair)

    def stop(self, session: str, mode: str) -> bool:
        """Asks this session's run of `mode` to stop within one step; False when it has none running."""
        with self._runs_lock:
            run = self._runs.get((session, mode))
        if run is None:
            return False
        run.stop_requested.set()
        run.pipeline.cancel()
        return True

    def is_running(self, session: str, mode: str) -> bool:
        with self._runs_lock:
            return (session, mode) in self._runs

    @property
    def idle_slots(self) -> int:
        return self._slots.qsize()

    # ---- files ----------------------------------------------------------------------------------------------------

    def new_output_path(self, stem: str, suffix: str = ".mp4") -> Path:
        """A fresh file under today's output folder, e.g. outputs/2026-11-24/text_to_av-1a2b3c4d.mp4."""
        folder = self.config.output_dir / datetime.now(timezone.utc).strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"
