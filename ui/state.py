"""The studio's one piece of mutable state: the loaded model, the pipelines lent to running jobs, the runs in flight.

Nothing about models or runs lives at module level; `app.py` builds one `StudioState` and hands it to the layout.
"""

import logging
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ltx_pipeline import TI2VidTwoStagesPipeline, constants
from ltx_pipeline.assembly import (
    DistributedContext,
    ModelSettings,
    ParallelRunner,
    SpeedOptions,
    assemble,
    lone_process,
)
from ltx_pipeline.limits import WorkLimit, default_work_limit
from ltx_pipeline.lora import LoraSpec, StageLoras, check_lora_spec, list_lora_files
from ltx_pipeline.model_defaults import defaults_for_model
from ltx_pipeline.modes import MODES
from ltx_pipeline.pipeline_common import LTXAVPipelineBase
from ltx_pipeline.speed.warmup import WarmUp, needs_warm_up, warm_up

from .long_form import check_audio_limit
from .pump import ABANDONED_S, HEARTBEAT_S
from .retention import STAGE_FOLDER, UPLOAD_LIFETIME_S, UPLOAD_SWEEP_S, RetentionPolicy, prune

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"

# The modes the studio has tabs for: every mode of the registry but long form, whose pipelines run the audio and text
# tabs' jobs longer than one window (`ui.long_form`).
STUDIO_MODES = tuple(mode for mode in MODES.values() if not mode.long_form)
LONG_FORM_MODES = tuple(mode for mode in MODES.values() if mode.long_form)
TEXT_TO_AV = MODES["t2av"].api_name
AUDIO_TO_VIDEO = MODES["a2v"].api_name
LORA_WAIT_POLL_S = 0.2  # s between checks of Stop while a run waits for other runs' LoRAs


@dataclass(frozen=True)
class StudioConfig:
    """How the studio is served; `app.py` fills it from the command line and the environment."""

    model: str = constants.EMBEDDED_MODEL_NAME  # "embedded", a Hub id, a diffusers folder or a .safetensors file
    spatial_upsampler: str | None = None  # single-file models: the official upsampler file (default: from the Hub)
    text_encoder: str | None = None  # single-file models: Gemma-3 Hub id or folder (default: the reference one)
    device: str | None = None  # None: CUDA when available, else CPU
    memory_mode: str | None = None  # ltx_pipeline.acceleration.MemoryMode name; None: everything on `device`
    speed: SpeedOptions = SpeedOptions()  # compile, CUDA graphs, attention backend, fp8, GELU epilogue, rotary
    concurrency_limit: int = 1  # generations run at once (each holds its own schedulers; weights are shared)
    max_queue_size: int = 16  # jobs waiting beyond this are refused with "queue is full"
    max_file_size: str = "50mb"  # uploads above this are refused by the server before any handler runs
    output_dir: Path = REPO_ROOT / "outputs"
    lora_folder: Path = REPO_ROOT / "loras"  # the LoRA picker lists the .safetensors files here; absent: no picker
    distilled_lora: str | None = None  # dev checkpoints: the official distilled LoRA, applied in stage 2 of every run
    num_gpus: int = 1  # GPUs each generation is split over (context parallelism; the app is started by torchrun)
    retention: RetentionPolicy = RetentionPolicy()  # how long outputs stay (age, total size, stage-1 clips)
    max_pixel_frames: int | None = None  # height x width x frames per job; None: LTX_MAX_PIXEL_FRAMES or the device's
    # s: a long run's audio clip longer than this is refused, naming it (`app.py --max-audio-duration`)
    max_audio_duration_s: float = constants.LONG_FORM_MAX_AUDIO_DURATION_S
    # s without the client asking for output before a run is stopped as abandoned (`ui.pump`; gradio asks every
    # heartbeat while its client listens)
    abandoned_after_s: float = ABANDONED_S
    # gradio's cache sweep: every `[0]` s, uploads unused for `[1]` s are removed (`retention.using_uploads`)
    upload_sweep: tuple[int, int] = (UPLOAD_SWEEP_S, UPLOAD_LIFETIME_S)

    @property
    def settings(self) -> ModelSettings:
        """The model part of the configuration, as the command line assembles it."""
        return ModelSettings(
            model=self.model,
            spatial_upsampler=self.spatial_upsampler,
            text_encoder=self.text_encoder,
            device=self.device,
            memory_mode=self.memory_mode,
            speed=self.speed,
            num_gpus=self.num_gpus,
        )

    def __post_init__(self) -> None:
        if self.max_pixel_frames is not None:
            WorkLimit(self.max_pixel_frames)
        check_audio_limit(self.max_audio_duration_s)
        if not isinstance(self.abandoned_after_s, (int, float)) or not self.abandoned_after_s > HEARTBEAT_S:
            raise ValueError(f"`abandoned_after_s` must be more than {HEARTBEAT_S} s; got {self.abandoned_after_s!r}.")
        settings = self.settings  # checked on creation
        if settings.num_gpus > 1 and self.concurrency_limit != 1:
            raise ValueError(
                f"`concurrency_limit` must be 1 with `num_gpus` > 1 (every GPU works on the same generation); "
                f"got {self.concurrency_limit} with {self.num_gpus} GPUs."
            )
        if self.distilled_lora is not None:
            check_lora_spec(self.distilled_lora, constants.DISTILLED_LORA_STRENGTH, "distilled_lora")
            if self.concurrency_limit != 1:
                # Stage 2 switches the shared transformer to the distilled LoRA: overlapping runs would see it in
                # their stage 1.
                raise ValueError(
                    "`concurrency_limit` must be 1 with a `distilled_lora` (the shared transformer switches LoRAs "
                    f"between the stages of each run); got {self.concurrency_limit}."
                )
        if isinstance(self.concurrency_limit, bool) or not isinstance(self.concurrency_limit, int):
            raise ValueError(f"`concurrency_limit` must be a whole number >= 1; got {self.concurrency_limit!r}.")
        if self.concurrency_limit < 1:
            raise ValueError(f"`concurrency_limit` must be >= 1; got {self.concurrency_limit}.")
        if isinstance(self.max_queue_size, bool) or not isinstance(self.max_queue_size, int):
            raise ValueError(f"`max_queue_size` must be a whole number >= 1; got {self.max_queue_size!r}.")
        if self.max_queue_size < 1:
            raise ValueError(f"`max_queue_size` must be >= 1; got {self.max_queue_size}.")


def _lora_key(loras: tuple[LoraSpec, ...]) -> tuple:
    """A LoRA set by file, strength and file version: a file rewritten in place counts as another set."""
    return tuple((spec.path.resolve(), spec.strength, spec.path.stat().st_mtime_ns) for spec in loras)


@dataclass
class Run:
    """One generation in flight: which pipeline it holds, and whether its owner asked it to stop."""

    session: str
    mode: str
    pipeline: TI2VidTwoStagesPipeline
    stop_requested: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Slot:
    """Every mode's pipeline over the same components: one slot of the pool."""

    pipelines: dict[str, LTXAVPipelineBase]  # by the mode's API name

    def for_mode(self, mode: str) -> LTXAVPipelineBase:
        """The pipeline of mode `mode` (its API name); an unknown mode is an error, never another mode's pipeline."""
        if mode not in self.pipelines:
            raise ValueError(f"Unknown mode {mode!r}; the modes are {', '.join(self.pipelines)}.")
        return self.pipelines[mode]


class StudioState:
    """Loads the model once, lends one pipeline pair per concurrent job, and tracks runs so Stop finds its own.

    LoRAs live on the transformer and connectors that every pipeline of the pool shares, so a run's LoRA set is
    the studio's LoRA set while it runs. Runs asking for the same set (files and strengths) overlap as usual; a run
    asking for another set waits until the runs in flight have finished, then switches the adapters (reusing
    those of unchanged files). Runs with no LoRAs form a set of their own.

    With `num_gpus` > 1 the state of rank 0 lends views whose `stream()` and `cancel()` reach every rank
    (`ltx_pipeline.parallel.ParallelRunner`); the other ranks call `serve()`.
    """

    def __init__(self, config: StudioConfig, context: DistributedContext | None = None):
        self.config = config
        # A lone process on the configured device unless `app.py` joined a torchrun group.
        self.context = context or lone_process(config.settings)
        if self.context.world_size != config.num_gpus:
            raise ValueError(
                f"`num_gpus` is {config.num_gpus} but this process runs in a group of {self.context.world_size}."
            )
        self._runner: ParallelRunner | None = None
        self._stage_loras = StageLoras()
        self._lora_condition = threading.Condition()
        self._lora_key: tuple = ()  # `_lora_key()` of the user LoRA set active on the shared modules
        self._lora_users = 0  # runs in flight with that set
        self._lora_waiting: Counter[tuple] = Counter()  # keys of the sets that runs wait for
        self._load_lock = threading.Lock()
        self._loaded = threading.Event()
        self._warming = threading.Event()
        self._load_error: BaseException | None = None
        self._slots: queue.Queue[Slot] = queue.Queue()
        self._runs_lock = threading.Lock()
        self._runs: dict[tuple[str, str], Run] = {}
        self.model_label = config.model
        self.model_summary = ""  # the loaded model's generation and what it means for a run (`versions.summary`)
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
                self.model_summary = base.model_summary
                self._unknown_words = base.unknown_words
                self.prompt_vocabulary = base.prompt_vocabulary
                for _ in range(self.config.concurrency_limit):
                    # Each slot gets its own pipeline objects (cancel flag, prompt cache) over the shared weights.
                    # Long form runs on one GPU only: its pipelines join the slot in a lone process.
                    modes = STUDIO_MODES + (LONG_FORM_MODES if self.context.world_size == 1 else ())
                    pipelines = {mode.api_name: mode.pipeline.from_pipe(base) for mode in modes}
                    for pipeline in pipelines.values():
                        pipeline.stage_loras = self._stage_loras
                        pipeline.work_limit = self.work_limit
                    if self.context.world_size > 1:
                        self._runner = ParallelRunner(pipelines, self.context)
                        pipelines = {name: self._runner.pipeline(name) for name in pipelines}
                    self._slots.put(Slot(pipelines))
            except BaseException as error:
                self._load_error = error
                raise
            self._loaded.set()
            logger.info("Loaded %s on %s (%d slot(s))", self.model_label, self.device, self.config.concurrency_limit)

    def _load_base(self) -> TI2VidTwoStagesPipeline:
        """The model assembled as the command line assembles it: bf16 on a GPU, float32 on the CPU; memory mode and
        speed options act on the modules, so every pipeline made from it shares them."""
        base = assemble(self.config.settings, TI2VidTwoStagesPipeline, self.context, stage_2_loras=self._stage_2_loras)
        if base.stage_loras is not None:
            self._stage_loras = base.stage_loras
        return base

    def serve(self) -> None:
        """Ranks other than 0 of a multi-GPU studio: load, then run every request rank 0 sends until `close()`."""
        self.load()
        self._runner.serve()

    def close(self) -> None:
        """Rank 0 of a multi-GPU studio: releases the other ranks from `serve()`; a no-op otherwise."""
        if self._runner is not None and self.context.is_main:
            self._runner.close()

    def start_loading(self) -> threading.Thread:
        """Loads in the background so the page opens at once; the first job waits for it."""
        thread = threading.Thread(target=self._load_quietly, name="model-loader", daemon=True)
        thread.start()
        return thread

    def _load_quietly(self) -> None:
        if needs_warm_up(self.config.speed):  # from the start: the page's refreshing never stops between the two
            self._warming.set()
        try:
            self.load()
        except Exception:
            self._warming.clear()
            logger.exception("Loading %r failed; every generation will report the error", self.config.model)
            return
        self.warm_up()

    def warm_up(self) -> WarmUp | None:
        """With compiled speed options, one text-to-video generation at the model's default size on a slot of the
        pool (a job started meanwhile waits for the slot), so that the users' first generation does not compile.
        Returns what it did; None where nothing needs it. A failure is logged; the studio serves on."""
        if not needs_warm_up(self.config.speed):
            return None
        slot = self._slots.get()
        self._warming.set()
        try:
            defaults = defaults_for_model(self.config.model)
            done = warm_up(
                slot.for_mode(TEXT_TO_AV), defaults.height, defaults.width, defaults.num_frames, defaults.frame_rate
            )
            logger.info(
                "Warmed up in %.1f s (%d frames at %dx%d).",
                done.seconds,
                done.num_frames,
                defaults.width,
                defaults.height,
            )
            return done
        except Exception:
            logger.exception("The warm-up generation failed; the first generation will compile instead")
            return None
        finally:
            self._warming.clear()
            self._slots.put(slot)

    @property
    def is_warming_up(self) -> bool:
        """The warm-up generation is running (`warm_up`)."""
        return self._warming.is_set()

    @property
    def device(self) -> str:
        return str(self.context.device)

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
    def work_limit(self) -> WorkLimit:
        """The most pixel-frames one job may ask for on this studio."""
        if self.config.max_pixel_frames is not None:
            return WorkLimit(self.config.max_pixel_frames, source="set by the studio's --max-pixel-frames")
        return default_work_limit(self.device)

    @property
    def is_embedded(self) -> bool:
        return self.config.model == constants.EMBEDDED_MODEL_NAME

    # ---- LoRAs ----------------------------------------------------------------------------------------------------

    @property
    def _stage_2_loras(self) -> list[LoraSpec]:
        if self.config.distilled_lora is None:
            return []
        return [check_lora_spec(self.config.distilled_lora, constants.DISTILLED_LORA_STRENGTH, "distilled_lora")]

    @property
    def lora_picker_off_reason(self) -> str | None:
        """Why runs cannot pick LoRAs in this studio, or None when they can."""
        if self.config.num_gpus > 1:
            return "LoRAs cannot be picked per run on several GPUs (each GPU would need the same switch)"
        if self.config.speed.fp8:
            return "LoRAs cannot be picked per run with fp8 products (LoRA layers must be added before fp8 layers)"
        return None

    def lora_files(self) -> dict[str, Path]:
        """The picker's choices: path relative to the LoRA folder -> file; empty without a folder or when off."""
        folder = Path(self.config.lora_folder)
        if self.lora_picker_off_reason is not None or not folder.is_dir():
            return {}
        return {path.relative_to(folder).as_posix(): path for path in list_lora_files(folder)}

    @contextmanager
    def _lora_set(self, run: Run, loras: tuple[LoraSpec, ...]) -> Iterator[bool]:
        """Holds the shared modules at `loras` for one run; yields False if the run was stopped while waiting."""
        key = _lora_key(loras)
        with self._lora_condition:
            self._lora_waiting[key] += 1
            try:
                # Same set: join the runs in flight, unless a run waits for another set (it would starve).
                while not (
                    self._lora_users == 0
                    or (key == self._lora_key and set(self._lora_waiting) == {key})
                    or run.stop_requested.is_set()
                ):
                    self._lora_condition.wait(timeout=LORA_WAIT_POLL_S)
                admitted = not run.stop_requested.is_set()
                if admitted and key != self._lora_key:
                    self._switch_loras(run.pipeline, loras, key)
            finally:
                self._lora_waiting[key] -= 1
                if not self._lora_waiting[key]:
                    del self._lora_waiting[key]
                self._lora_condition.notify_all()
            if admitted:
                self._lora_users += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lora_condition:
                    self._lora_users -= 1
                    self._lora_condition.notify_all()

    def _switch_loras(self, pipeline: TI2VidTwoStagesPipeline, loras: tuple[LoraSpec, ...], key: tuple) -> None:
        """Loads `loras` onto the shared modules (no run is in flight); a file that fails leaves no user LoRA."""
        try:
            self._stage_loras = self._stage_loras.update(pipeline, loras, self._stage_2_loras)
        except BaseException:
            self._stage_loras = self._stage_loras.update(pipeline, (), self._stage_2_loras)
            self._lora_key = ()
            raise
        self._lora_key = key
        logger.info("LoRAs now %s", ", ".join(f"{spec.path.name} ({spec.strength:g})" for spec in loras) or "none")

    # ---- runs -----------------------------------------------------------------------------------------------------

    @contextmanager
    def run(
        self, session: str, mode: str, loras: Sequence[LoraSpec] = (), pipeline_mode: str | None = None
    ) -> Iterator[Run]:
        """Lends a pipeline for one job at the LoRA set `loras` and registers the run so `stop(session, mode)`
        reaches it, also while it waits for other runs' LoRAs (`run.stop_requested` is then set on entry).
        `pipeline_mode`: the mode whose pipeline runs the job (a tab's long form), when not `mode`'s own."""
        self.load()
        loras = tuple(loras)
        if loras and self.lora_picker_off_reason is not None:
            raise ValueError(f"`loras` must be empty in this studio: {self.lora_picker_off_reason}; got {len(loras)}.")
        slot = self._slots.get()
        try:
            run = Run(session=session, mode=mode, pipeline=slot.for_mode(pipeline_mode or mode))
        except ValueError:
            self._slots.put(slot)
            raise
        with self._runs_lock:
            self._runs[(session, mode)] = run
        try:
            if self.context.world_size > 1:
                yield run  # one run at a time; the distilled LoRA, if any, was set on every rank at load
                return
            with self._lora_set(run, loras) as admitted:
                if admitted:
                    run.pipeline.stage_loras = self._stage_loras
                yield run
        finally:
            with self._runs_lock:
                if self._runs.get((session, mode)) is run:
                    del self._runs[(session, mode)]
            self._slots.put(slot)

    def stop(self, session: str, mode: str) -> bool:
        """Asks this session's run of `mode` to stop within one step; False when it has none running."""
        with self._runs_lock:
            run = self._runs.get((session, mode))
        if run is None:
            return False
        run.stop_requested.set()
        run.pipeline.cancel()
        return True

    def stop_run(self, run: Run) -> None:
        """Stops `run` if it is still in flight; a no-op once it has finished (its pipeline may serve a newer run)."""
        with self._runs_lock:
            if self._runs.get((run.session, run.mode)) is not run:
                return
            run.stop_requested.set()
            run.pipeline.cancel()

    def is_running(self, session: str, mode: str) -> bool:
        with self._runs_lock:
            return (session, mode) in self._runs

    @property
    def idle_slots(self) -> int:
        return self._slots.qsize()

    # ---- files ----------------------------------------------------------------------------------------------------

    def new_output_path(self, stem: str, suffix: str = ".mp4", stage: bool = False) -> Path:
        """A fresh file under today's output folder, e.g. outputs/2026-11-24/text_to_av-1a2b3c4d.mp4; a stage-1
        clip goes to outputs/stage1/ (removed after a while) unless the studio keeps stage files."""
        root = self.config.output_dir
        if stage and not self.config.retention.keep_stage_files:
            root = root / STAGE_FOLDER
        folder = root / datetime.now(timezone.utc).strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"

    def prune_outputs(self, keep: Iterable[Path] = ()) -> list[Path]:
        """Applies the retention policy to the output folder (after each run) but for `keep` (that run's files);
        returns what was removed."""
        return prune(self.config.output_dir, self.config.retention, keep=keep)
