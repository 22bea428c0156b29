"""The studio page: one tab per mode of the registry (`ltx_pipeline.modes`) over one `StudioState`.

Layout only: every event calls a method of `StudioHandlers`. Generation shares one queue (`concurrency_id`),
cheap updates skip it (`queue=False`), and each tab's generation event is the named API endpoint of its mode.
"""

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ltx_pipeline import constants
from ltx_pipeline.lora import list_lora_files
from ltx_pipeline.model_defaults import defaults_for_model
from ltx_pipeline.modes import Mode, Option

from . import help as studio_help
from .api_inputs import name_input_errors
from .handlers import (
    AUTO_MODE,
    LORA_SLOTS,
    NO_LORA,
    StudioHandlers,
    late_options,
    lora_menu,
    own_options,
    page_parameters,
    sets_size,
)
from .long_form import LongFormControls, clip_length, extends, long_form_controls, plan_notice
from .retention import keeping_queued_uploads
from .state import EXAMPLES_DIR, STUDIO_MODES, TEXT_TO_AV, StudioConfig, StudioState
from .zerogpu import duration_for, on_gpu

GENERATION_QUEUE = "generation"  # the one concurrency group every generation joins
MODALITY_SCALE_RANGE = (1.0, 10.0)  # slider range; the pipeline accepts up to constants.MAX_GUIDANCE_SCALE
DEV_STEPS_RANGE = (1, 60)  # slider range for the dev schedule
VIDEO_HEIGHT = 360  # px on the page; the files keep their own size
MODEL_NOTE_REFRESH_S = 2.0  # s between refreshes of the model note while the model loads


@dataclass(frozen=True)
class Defaults:
    resolution: str
    num_frames: int
    frame_rate: float = constants.DEFAULT_FRAME_RATE
    seed: int = constants.DEFAULT_SEED
    modality_scale: float = constants.MODALITY_SCALE
    sizes: tuple[str, ...] | None = None  # "WxH" sizes the model was trained at; None: any
    frame_rates: tuple[float, ...] | None = None  # fps the model was trained at; None: any


@dataclass(frozen=True)
class SharedControls:
    """The controls every tab has, in the order the handlers take them after the mode's own (`page_parameters`);
    the size, length and rate only where the user picks them, the image only where the mode takes one."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    num_frames: gr.Dropdown | None
    frame_rate: gr.Number | None
    resolution: gr.Dropdown | None
    seed: gr.Number
    randomize_seed: gr.Checkbox
    mode: gr.Radio
    num_inference_steps: gr.Slider
    modality_scale: gr.Slider
    image: gr.Image | None
    image_strength: gr.Slider | None
    image_frame_index: gr.Slider | None
    loras: tuple[tuple[gr.Dropdown, gr.Slider], ...]  # LORA_SLOTS rows of (file, strength)

    def inputs(self) -> list[gr.components.Component]:
        widgets = [
            self.prompt,
            self.negative_prompt,
            self.num_frames,
            self.frame_rate,
            self.resolution,
            self.seed,
            self.randomize_seed,
            self.mode,
            self.num_inference_steps,
            self.modality_scale,
            self.image,
            self.image_strength,
            self.image_frame_index,
        ]
        return [widget for widget in widgets if widget is not None] + [w for row in self.loras for w in row]


def defaults_for(state: StudioState) -> Defaults:
    """The page's (and so the API's) defaults: the loaded model's own (`ltx_pipeline.model_defaults`)."""
    model = defaults_for_model(state.config.model)
    return Defaults(
        model.resolution,
        model.num_frames,
        frame_rate=model.frame_rate,
        modality_scale=constants.MODALITY_SCALE if model.modality_scale is None else model.modality_scale,
        sizes=model.sizes,
        frame_rates=model.frame_rates,
    )


def load_example_prompts() -> dict[str, Any]:
    return json.loads((EXAMPLES_DIR / "prompts.json").read_text())


def examples_for(state: StudioState, examples: dict[str, Any], job: str) -> list:
    """The embedded model's own examples (it knows a small vocabulary and ignores other words), else the general
    ones; a mode without examples of its own (a video's) gets the text tab's prompts."""
    job = job if job in examples else TEXT_TO_AV
    return examples[f"embedded_{job}"] if state.is_embedded else examples[job]


def build_demo(state: StudioState) -> gr.Blocks:
    """The whole page, its queue configured from `state.config`."""
    handlers = StudioHandlers(state)
    defaults = defaults_for(state)
    examples = load_example_prompts()
    with gr.Blocks(title="LTX-2.3 audio+video studio", delete_cache=state.config.upload_sweep) as demo:
        gr.Markdown(
            "# LTX-2.3 audio+video studio\nSynchronized sound and picture from a prompt, or a video for your own audio."
        )
        model_note = gr.Markdown(handlers.model_note(), elem_id="model-note")
        # Real weights take minutes to load in the background: the note refreshes until they are in.
        loading_timer = gr.Timer(MODEL_NOTE_REFRESH_S, active=not state.is_loaded)
        private = {"queue": False, "api_visibility": "private"}
        demo.load(handlers.model_status, None, [model_note, loading_timer], **private)
        loading_timer.tick(handlers.model_status, None, [model_note, loading_timer], **private)
        with gr.Tabs():
            for mode in STUDIO_MODES:
                with gr.Tab(mode.title, id=mode.api_name):
                    _mode_tab(handlers, mode, defaults, state.config, examples_for(state, examples, mode.api_name))
    demo.queue(max_size=state.config.max_queue_size, default_concurrency_limit=state.config.concurrency_limit)
    return demo


def launch_options(config: StudioConfig) -> dict[str, Any]:
    """`demo.launch()` keywords that keep uploads small and serve only the studio's own outputs and examples."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    return {
        "max_file_size": config.max_file_size,
        "allowed_paths": [str(config.output_dir), str(EXAMPLES_DIR)],
        "ssr_mode": False,  # server-side rendering needs Node; the studio must open offline on a bare machine
        "footer_links": ["api", "gradio"],
        "app_kwargs": {"lifespan": keeping_queued_uploads()},  # waiting jobs keep their uploads (`retention`)
    }


# ---- tabs ---------------------------------------------------------------------------------------------------------


def _mode_tab(handlers: StudioHandlers, mode: Mode, defaults: Defaults, config: StudioConfig, examples: list) -> None:
    """One mode's tab: its own inputs, the shared controls, Generate and Stop, and its outputs."""
    prefix = mode.name
    with gr.Row():
        with gr.Column(scale=5):
            own = {option.keyword: _own_input(option, prefix) for option in own_options(mode)}
            late = [own.pop(option.keyword) for option in late_options(mode)]  # the endpoint takes these last
            helpers = _input_helpers(handlers, mode, own, prefix)
            controls = _shared_controls(handlers, defaults, prefix, sets_size(mode), mode.takes_images)
            long_form = long_form_controls(prefix) if extends(mode) else None
            generate, stop = _buttons(prefix)
        with gr.Column(scale=6):
            shown = _outputs(prefix, preview_audio=mode.generates_audio, stage_video=mode.two_stage)
    parameters = page_parameters(mode)
    _wire_generation(
        handlers,
        mode,
        generate,
        stop,
        run=on_gpu(handlers.generation(mode), duration_for(mode, parameters)),
        inputs=[*own.values(), *controls.inputs(), *late, *(long_form.inputs() if long_form else [])],
        shown=shown,
        config=config,
    )
    if long_form is not None:
        _wire_long_form(handlers, own, controls, long_form, prefix)
    name_input_errors({keyword: widget for keyword, widget in own.items() if keyword != "fit"})
    helpers(controls)
    if "audio" in own:
        gr.Examples(
            examples=[[str(EXAMPLES_DIR / path), prompt] for path, prompt in examples],
            inputs=[own["audio"], controls.prompt],
            label="Clips made by this project, with prompts",
        )
    else:
        gr.Examples(examples=[[prompt] for prompt in examples], inputs=[controls.prompt], label="Prompts with sound")


def _own_input(option: Option, prefix: str) -> gr.components.Component:
    """The widget of one of a mode's own inputs, labelled as the registry labels it."""
    elem_id = f"{prefix}-{option.keyword.replace('_', '-')}"
    if option.keyword == "audio":
        return gr.Audio(
            label=f"{option.label} (upload or record)",
            sources=["upload", "microphone"],
            type="filepath",
            elem_id=elem_id,
        )
    if option.keyword == "video":
        # format None: the upload reaches the pipeline as it is (no conversion), so its frames can be kept exactly.
        return gr.Video(label=f"{option.label} ({option.help})", sources=["upload"], format=None, elem_id=elem_id)
    if option.switch:
        return gr.Checkbox(value=bool(option.default), label=option.label, elem_id=elem_id)
    if option.choices is not None:
        choices = [(choice, choice) for choice in option.choices]
        if not option.required and option.default is None:
            choices = [("as it is", "")] + choices
        return gr.Radio(
            choices=choices, value=option.default or "", label=option.label, info=option.help, elem_id=elem_id
        )
    precision = 0 if option.type is int else None
    return gr.Number(value=option.default, label=option.label, info=option.help, precision=precision, elem_id=elem_id)


def _input_helpers(
    handlers: StudioHandlers, mode: Mode, own: dict[str, gr.components.Component], prefix: str
) -> Callable[[SharedControls], None]:
    """The notices under a mode's own inputs (a clip's length against the chosen one, a video's frames and size),
    wired once the shared controls exist; returns that wiring."""
    private = {"queue": False, "api_visibility": "private"}
    if "audio" in own:
        audio, audio_start_time = own["audio"], own["audio_start_time"]
        length_notice = gr.Markdown(elem_id=f"{prefix}-length-notice")
        audio_help = gr.Markdown(elem_id=f"{prefix}-audio-help")
        use_frames = gr.Button("Use the matching frame count", visible=False, size="sm", elem_id=f"{prefix}-fit")
        suggested_frames = gr.State(None)

        def wire(controls: SharedControls) -> None:
            help_inputs = [audio, audio_start_time, controls.num_frames, controls.frame_rate]
            for trigger in (audio.change, audio_start_time.change, controls.num_frames.change):
                trigger(handlers.audio_help, help_inputs, [audio_help, use_frames, suggested_frames], **private)
            controls.frame_rate.change(
                handlers.audio_help, help_inputs, [audio_help, use_frames, suggested_frames], **private
            )
            use_frames.click(handlers.use_suggested_frames, suggested_frames, controls.num_frames, **private)
            # A new clip sets the length to the longest it covers (up to the model's longest), with a notice.
            audio.change(
                handlers.fit_length_to_clip,
                [audio, audio_start_time, controls.frame_rate],
                [controls.num_frames, length_notice],
                **private,
            )

        return wire
    if "video" in own:
        video_notice = gr.Markdown(elem_id=f"{prefix}-video-notice")

        def wire(controls: SharedControls) -> None:
            # A new video: its frames, size and rate, and what the model needs of them (the length to use filled
            # in, said in the notice, where its frame count is not 8k+1).
            own["video"].change(handlers.video_help, [own["video"]], [video_notice, own["num_frames"]], **private)

        return wire
    return lambda controls: None


# ---- pieces -------------------------------------------------------------------------------------------------------


def _shared_controls(
    handlers: StudioHandlers, defaults: Defaults, prefix: str, sized: bool = True, images: bool = True
) -> SharedControls:
    prompt = gr.Textbox(
        label="Prompt",
        lines=4,
        placeholder="Describe the picture and the sound: source, material, space. Quote any dialogue.",
        elem_id=f"{prefix}-prompt",
    )
    prompt_hint = gr.Markdown(elem_id=f"{prefix}-prompt-hint")
    num_frames, frame_rate, resolution = _size_controls(defaults, prefix) if sized else (None, None, None)
    modality_scale = gr.Slider(
        *MODALITY_SCALE_RANGE,
        value=defaults.modality_scale,
        step=0.1,
        label="Modality scale",
        info="Above 1 steers sound and picture toward each other (one extra pass per step); 1 turns it off.",
        elem_id=f"{prefix}-modality",
    )
    image, image_notice, image_frame_index, image_strength = (
        _image_controls(defaults, prefix) if images else (None, None, None, None)
    )
    loras = _lora_picker(handlers, prefix)
    with gr.Accordion("More settings", open=False):
        negative_prompt = gr.Textbox(
            label="Negative prompt (dev mode)",
            lines=2,
            placeholder="Empty: the reference negative prompt (visual and audio defects)",
            elem_id=f"{prefix}-negative",
        )
        with gr.Row():
            mode = gr.Radio(
                choices=[("checkpoint's own", AUTO_MODE), ("distilled", "distilled"), ("dev", "dev")],
                value=AUTO_MODE,
                label="Mode",
                info="distilled: 8 + 3 fixed steps, one pass each; dev: guided steps (CFG, STG, modality)",
                elem_id=f"{prefix}-mode",
            )
            num_inference_steps = gr.Slider(
                *DEV_STEPS_RANGE,
                value=constants.DEV_NUM_INFERENCE_STEPS,
                step=1,
                label="Steps (dev mode)",
                interactive=False,
                elem_id=f"{prefix}-steps",
            )
        with gr.Row():
            seed = gr.Number(value=defaults.seed, precision=0, label="Seed", elem_id=f"{prefix}-seed")
            randomize_seed = gr.Checkbox(value=False, label="Random seed each run", elem_id=f"{prefix}-random-seed")

    private = {"queue": False, "api_visibility": "private"}
    prompt.change(handlers.prompt_hint, prompt, prompt_hint, trigger_mode="always_last", **private)
    mode.change(handlers.steps_control, mode, num_inference_steps, **private)
    if sized:
        frame_rate.change(handlers.frame_choices, [frame_rate, num_frames], num_frames, **private)
    if sized and images:
        for trigger in (image.change, resolution.change):
            trigger(handlers.image_notice, [image, resolution], image_notice, **private)
        num_frames.change(handlers.frame_index_range, [num_frames, image_frame_index], image_frame_index, **private)
    controls = SharedControls(
        prompt,
        negative_prompt,
        num_frames,
        frame_rate,
        resolution,
        seed,
        randomize_seed,
        mode,
        num_inference_steps,
        modality_scale,
        image,
        image_strength,
        image_frame_index,
        loras,
    )
    # A value gradio cannot read names its API parameter; the frame index is checked against the length.
    named = {
        field.name: getattr(controls, field.name)
        for field in dataclasses.fields(controls)
        if field.name != "loras" and getattr(controls, field.name) is not None
    }
    named |= {f"lora_{slot}_strength": strength for slot, (_, strength) in enumerate(loras, start=1)}
    name_input_errors(named, unbounded=("image_frame_index",))
    return controls


def _size_controls(defaults: Defaults, prefix: str) -> tuple[gr.Dropdown, gr.Number, gr.Dropdown]:
    """Length, frame rate and resolution, for the modes where the user picks them."""
    with gr.Row():
        num_frames = gr.Dropdown(
            choices=studio_help.frame_count_choices(defaults.frame_rate),
            value=defaults.num_frames,
            label="Length",
            info=studio_help.FRAME_COUNT_INFO,
            allow_custom_value=True,  # API callers may send any count: the handler explains a wrong one
            elem_id=f"{prefix}-frames",
        )
        known = defaults.frame_rates
        frame_rate = gr.Number(
            value=defaults.frame_rate,
            label="Frame rate (fps)",
            info=f"This model knows {', '.join(f'{rate:g}' for rate in known)} fps" if known else None,
            elem_id=f"{prefix}-fps",
        )
    resolution = gr.Dropdown(
        choices=studio_help.resolution_choices(defaults.sizes),
        value=defaults.resolution,
        label="Resolution (width x height)",
        allow_custom_value=True,
        elem_id=f"{prefix}-resolution",
    )
    return num_frames, frame_rate, resolution


def _image_controls(defaults: Defaults, prefix: str) -> tuple[gr.Image, gr.Markdown, gr.Slider, gr.Slider]:
    """An image held at a frame with a strength, for the modes that take one."""
    with gr.Accordion("Start from an image (optional)", open=False):
        image = gr.Image(
            label="Image (upload, webcam or paste)",
            type="filepath",
            sources=["upload", "webcam", "clipboard"],
            elem_id=f"{prefix}-image",
        )
        image_notice = gr.Markdown(elem_id=f"{prefix}-image-notice")
        with gr.Row():
            image_frame_index = gr.Slider(
                0,
                defaults.num_frames - 1,
                value=0,
                step=1,
                label="Frame index",
                info="0 = first frame (image to video); a later frame makes the image a keyframe there.",
                elem_id=f"{prefix}-image-frame",
            )
            image_strength = gr.Slider(
                0.0,
                1.0,
                value=1.0,
                step=0.05,
                label="Image strength",
                info="1 holds the frame as given; lower lets the model repaint it.",
                elem_id=f"{prefix}-image-strength",
            )
    return image, image_notice, image_frame_index, image_strength


def _lora_picker(handlers: StudioHandlers, prefix: str) -> tuple[tuple[gr.Dropdown, gr.Slider], ...]:
    """Up to LORA_SLOTS files of the LoRA folder, each with a strength; hidden when the folder has none. Where this
    studio cannot take LoRAs per run (`lora_picker_off_reason`) but its folder has files, the section says why."""
    files = handlers.state.lora_files()
    off_reason = handlers.state.lora_picker_off_reason
    folder = Path(handlers.state.config.lora_folder)
    unusable = off_reason is not None and folder.is_dir() and bool(list_lora_files(folder))
    rows = []
    with gr.Accordion("LoRAs (optional)", open=False, visible=bool(files) or unusable, elem_id=f"{prefix}-loras"):
        gr.Markdown(
            f"{off_reason}."
            if unusable
            else f"Files in the studio's LoRA folder (`{folder.name}/`), applied in both stages."
        )
        for slot in range(1, LORA_SLOTS + 1):
            with gr.Row():
                lora = gr.Dropdown(
                    choices=lora_menu(files),
                    value=NO_LORA,
                    label=f"LoRA {slot}",
                    visible=not unusable,
                    elem_id=f"{prefix}-lora-{slot}",
                )
                strength = gr.Slider(
                    constants.MIN_LORA_STRENGTH,
                    constants.MAX_LORA_STRENGTH,
                    value=constants.DEFAULT_LORA_STRENGTH,
                    step=0.05,
                    label=f"LoRA {slot} strength",
                    visible=not unusable,
                    elem_id=f"{prefix}-lora-{slot}-strength",
                )
            rows.append((lora, strength))
        refresh = gr.Button("Look for new files", size="sm", visible=not unusable, elem_id=f"{prefix}-lora-refresh")
    menus = [lora for lora, _ in rows]
    refresh.click(handlers.lora_choices, None, menus, queue=False, api_visibility="private")
    return tuple(rows)


def _buttons(prefix: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id=f"{prefix}-generate")
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    return generate, stop


@dataclass(frozen=True)
class OutputWidgets:
    status: gr.Markdown
    preview_image: gr.Image
    preview_audio: gr.Audio | None  # modes that make sound only: A2V keeps the user's audio as it is
    stage_video: gr.Video | None  # two-stage modes only
    final_video: gr.Video
    recipe: gr.JSON

    def outputs(self) -> list[gr.components.Component]:
        widgets = [self.preview_image, self.preview_audio, self.stage_video, self.final_video, self.status]
        return [widget for widget in widgets if widget is not None] + [self.recipe]


def _outputs(prefix: str, preview_audio: bool, stage_video: bool = True) -> OutputWidgets:
    status = gr.Markdown("**Ready.**", label="Status", show_label=False, elem_id=f"{prefix}-status")
    preview_image = gr.Image(
        label="Preview while it runs: start, middle and end, a sketch (not the final video)",
        type="numpy",
        format="png",
        interactive=False,
        elem_id=f"{prefix}-preview",
    )
    preview_audio_widget = None
    if preview_audio:
        preview_audio_widget = gr.Audio(
            label="Step preview audio", type="numpy", interactive=False, elem_id=f"{prefix}-preview-audio"
        )
    stage_video_widget = None
    if stage_video:
        stage_video_widget = gr.Video(
            label="Stage 1: low resolution, with sound",
            interactive=False,
            height=VIDEO_HEIGHT,
            elem_id=f"{prefix}-stage1",
        )
    final_video = gr.Video(
        label="Final video with sound", interactive=False, height=VIDEO_HEIGHT, elem_id=f"{prefix}-final"
    )
    with gr.Accordion("Recipe (everything needed to reproduce this clip)", open=False):
        recipe = gr.JSON(label="Recipe", show_label=False, elem_id=f"{prefix}-recipe")
    return OutputWidgets(status, preview_image, preview_audio_widget, stage_video_widget, final_video, recipe)


def _wire_generation(
    handlers: StudioHandlers,
    mode: Mode,
    generate: gr.Button,
    stop: gr.Button,
    run: Callable,
    inputs: list[gr.components.Component],
    shown: OutputWidgets,
    config: StudioConfig,
) -> None:
    api_name = mode.api_name

    def after_failure(request: gr.Request = None) -> str:
        return handlers.after_failure(api_name, request)

    def stop_run(request: gr.Request = None) -> tuple[str, None]:
        return handlers.stop(api_name, request), None  # a stopped run's last step preview goes with it

    def await_stop(request: gr.Request = None) -> str:
        return handlers.stopped(api_name, request)

    generation = generate.click(
        run,
        inputs,
        shown.outputs(),
        api_name=api_name,
        concurrency_id=GENERATION_QUEUE,
        concurrency_limit=config.concurrency_limit,
        show_progress="full",
        # The final video's box is large enough for gradio's queue place and time estimate ("queue: 2/3 | 4.1/9.5s")
        # while a job waits behind another; the status line alone showed a greyed "Ready.".
        show_progress_on=[shown.status, shown.final_video],
    )
    generation.failure(after_failure, None, shown.status, queue=False, api_visibility="private")
    # The step preview goes once the run is over (an API caller still gets the last one in the result).
    generation.then(lambda: None, None, shown.preview_image, queue=False, api_visibility="private")
    # Stop sets the pipeline's cancel flag (the step loop ends after the current step) and cancels the event, which
    # also drops a job still waiting in the queue and, on ZeroGPU, ends the GPU task that runs in another process.
    # The page says "ready" once the stopped run has let go of its pipeline (a step can take seconds).
    stopping = stop.click(
        stop_run,
        None,
        [shown.status, shown.preview_image],
        queue=False,
        api_visibility="private",
        cancels=[generation],
    )
    if not extends(mode):
        stopping.then(await_stop, None, shown.status, queue=False, api_visibility="private")
        return

    # A stopped long run keeps its finished windows as a playable mp4: shown once the run has let go.
    def await_stop_with_file(request: gr.Request = None) -> tuple:
        return handlers.stopped_with_file(api_name, request)

    stopping.then(
        await_stop_with_file,
        None,
        [shown.status, shown.final_video, shown.recipe],
        queue=False,
        api_visibility="private",
    )


def _wire_long_form(
    handlers: StudioHandlers,
    own: dict[str, gr.components.Component],
    controls: SharedControls,
    long_form: LongFormControls,
    prefix: str,
) -> None:
    """A length beyond one window: what it makes, said before generating; a new clip longer than one window makes
    the whole clip the default (after the Length is fitted to the clip)."""
    private = {"queue": False, "api_visibility": "private"}
    plan_inputs = [long_form.duration, controls.num_frames, controls.frame_rate]
    for widget in plan_inputs:
        widget.change(plan_notice, plan_inputs, long_form.notice, **private)
    name_input_errors(
        {"duration_s": long_form.duration, "prompt_timeline": long_form.timeline}, unbounded=("duration_s",)
    )
    if "audio" not in own:
        return
    audio, start = own["audio"], own["audio_start_time"]
    notice = gr.Markdown(elem_id=f"{prefix}-clip-notice")
    window = defaults_for_model(handlers.state.config.model).max_num_frames  # the Length a long clip is fitted to

    def whole_clip(clip: str | None, start_s: float, frame_rate: float) -> tuple:
        return clip_length(clip, start_s, frame_rate, window)

    for trigger in (audio.change, start.change):
        trigger(whole_clip, [audio, start, controls.frame_rate], [long_form.duration, notice], **private)
