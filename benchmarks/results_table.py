"""Markdown tables from bench_full_size.py result files: python benchmarks/results_table.py call1.json [call2.json]."""

import json
import sys

FORWARD_SECTIONS = {
    "eager_native": "eager, native SDPA (baseline; from run 29 without the all-ones prompt masks, as the pipelines)",
    "eager_native_text_mask": "eager, native SDPA, with the all-ones prompt masks (the pipelines until run 28)",
    "eager_native_no_text_mask": "eager, native SDPA, all-ones text mask dropped",
    "eager__native_cudnn": "eager, cuDNN SDPA",
    "eager__native_cudnn_no_text_mask": "eager, cuDNN SDPA, text mask dropped",
    "eager__native_cudnn_all": "eager, cuDNN SDPA on every attention",
    "eager__native_cudnn_video": "eager, cuDNN SDPA on the video self-attention",
    "eager__native_flash": "eager, flash SDPA",
    "eager__native_flash_no_text_mask": "eager, flash SDPA, text mask dropped",
    "eager__native_flash_all": "eager, flash SDPA on every attention",
    "eager__native_flash_video": "eager, flash SDPA on the video self-attention",
    "compile": "regional compile",
    "graphs": "regional compile + CUDA graphs",
    "graphs_gelu": "regional compile + CUDA graphs + GELU epilogue",
    "rope_experiment": "regional compile + CUDA graphs + GELU epilogue + out-of-place rotary (run 9: as a patch of diffusers)",
    "graphs_fused": "regional compile + CUDA graphs + GELU epilogue + out-of-place rotary",
    "graphed_rotary_experiment": "as graphs_fused, the rotary-embedding modules also CUDA-graphed (run 10; `cuda_graphs=True` since)",
    "autotune": "regional compile, torch's max-autotune mode (CUDA graphs + inductor's own matrix products)",
    "eager_triton_video": "eager, Triton kernel on the video self-attention",
    "graphs_video__native_cudnn": "regional compile + CUDA graphs, cuDNN SDPA on the video self-attention",
    "graphs_all__native_cudnn": "regional compile + CUDA graphs, cuDNN SDPA on every attention",
    "graphs_video_triton": "regional compile + CUDA graphs, Triton kernel on the video self-attention",
    "fp8_eager": "fp8 row-wise, eager",
    "fp8_compile": "fp8 row-wise + regional compile",
    "fp8_graphs": "fp8 row-wise + regional compile + CUDA graphs",
    "fp8_graphs_fused": "fp8 row-wise + regional compile + CUDA graphs + GELU epilogue (audio) + out-of-place rotary",
    "fp8_row_kernel": "as fp8_graphs_fused, with the video feed-forwards' bias, GELU and fp8 scales in one kernel "
    "(exact arithmetic in runs 16-19, the fast math it uses on CUDA from run 20)",
    "fp8_row_kernel_compiled": "as fp8_row_kernel, without CUDA graphs (for a profile)",
    "fp8_fused_norms": "as fp8_row_kernel, with each video norm, its modulation, the residual add before it and the "
    "fp8 scales in one kernel (`fused_norms`; from run 24 `fp8_row_kernel` also gates the attention outputs in one pass, "
    "from run 26 the audio norms are fused too, without fp8 scales)",
    "fp8_ungated_output_experiment": "as fp8_fused_norms, the attention outputs' gating and fp8 scales left to "
    "inductor (the layout of runs 22-23)",
    "fp8_gates_experiment": "as fp8_fused_norms, the video attentions' gate logits as fp8 products too (experiment)",
    "fp8_row_kernel_all_experiment": "as fp8_row_kernel, every fp8 input's scales from that kernel (run 17; taken out)",
    "rows_experiment": "as graphs_fused, inductor's row reductions of up to 16,384 values persistent (run 18; taken out)",
    "fp8_rows_experiment": "as fp8_graphs_fused, inductor's row reductions persistent (run 18; taken out)",
    "fast_row_kernel_experiment": "as fp8_row_kernel, the kernel with fast math (run 19; its CUDA default since)",
    "fast_row_kernel_chunked_experiment": "as fp8_row_kernel, fast math, rows read in chunks of 2,048 (run 19; taken out)",
    "fast_row_kernel_rows_experiment": "as the chunked one, inductor's row reductions persistent (run 19; taken out)",
    "fp8_inverse_scale_experiment": "as fp8_row_kernel, the other fp8 inputs multiplied by the scale's inverse rather "
    "than divided by the scale (run 21; taken out)",
    "whole_graph_experiment": "as graphs_fused, the blocks compiled without graphs and the whole forward one CUDA graph",
    "fp8_whole_graph_experiment": "as fp8_row_kernel, the blocks compiled without graphs and the whole forward one "
    "CUDA graph (experiment; since the `forward_graph` option)",
    "graph_forward": "as graphs_fused, the whole forward one CUDA graph instead of a graph per block (`forward_graph`)",
    "float_tables_experiment": "as graph_forward, the rotary tables in float32 (float16 on CUDA with `fused_rotary` "
    "from run 29)",
    "graph_forward_norms": "as graph_forward, with each block norm, its modulation and the residual add before it in "
    "one kernel (`fused_norms` on bf16 products)",
    "fp8_graph_forward": "as fp8_fused_norms, the whole forward one CUDA graph instead of a graph per block "
    "(`forward_graph`): every fp8 option",
    "fp8_unfused_rotary_experiment": "as fp8_graph_forward, the queries' and keys' norm and rotation left to inductor "
    "(the layout before `rotary_kernels`)",
    "text_mask_experiment": "as graph_forward, with the all-ones prompt masks the pipelines passed until run 28 "
    "(`text_mask_experiment`)",
}


def _fmt_dev(entry: dict, section: str) -> str:
    if "video_dev_vs_ungraphed" in entry:  # the whole-forward graph against the same blocks run without it
        video, audio = entry["video_dev_vs_ungraphed"], entry["audio_dev_vs_ungraphed"]
        return (
            f"vs the same blocks ungraphed: video rel {video['rel_l2']:.2e} / max {video['max_abs']:.3g}; "
            f"audio rel {audio['rel_l2']:.2e} / max {audio['max_abs']:.3g}"
        )
    if "video_dev" not in entry:
        if not entry.get("finite", True):
            return "NON-FINITE"
        return "reference" if section == "eager_native" else "not measured (run without the eager section)"
    video, audio = entry["video_dev"], entry["audio_dev"]
    return (
        f"video rel {video['rel_l2']:.2e} / max {video['max_abs']:.3g}; "
        f"audio rel {audio['rel_l2']:.2e} / max {audio['max_abs']:.3g}"
    )


def forward_table(results: list[dict]) -> str:
    lines = [
        "| file | variant | shape | ms / forward | TFLOP/s | first call s | peak GiB | deviation vs eager bf16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, result in enumerate(results, 1):
        sections = result["sections"]
        for key, label in FORWARD_SECTIONS.items():
            for shape, entry in sections.get(key, {}).items():
                if not isinstance(entry, dict) or "ms" not in entry:
                    if shape in ("error",) or shape.endswith(".skipped"):
                        lines.append(f"| {index} | {label} | {shape} | {entry} | | | | |")
                    continue
                lines.append(
                    f"| {index} | {label} | {shape} | {entry['ms']:.1f} | {entry['tflops']:.0f} | "
                    f"{entry['first_call_s']:.1f} | {entry['peak_gib']} | {_fmt_dev(entry, key)} |"
                )
    return "\n".join(lines)


def e2e_table(results: list[dict]) -> str:
    lines = [
        "| file | run | pipeline | end to end s (to mp4) | generation s | mp4 write s | first preview s | "
        "stage-1 decoded s | stage timings s | peak GiB | with diffusers' writer: write s / end to end s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, result in enumerate(results, 1):
        for section, entries in result["sections"].items():
            if not (section.startswith("e2e") or section == "mode_24gb"):
                continue
            for name in ("t2av", "a2v"):
                entry = entries.get(name)
                if not isinstance(entry, dict):
                    continue
                timings = ", ".join(f"{key} {value}" for key, value in entry["timings_s"].items())
                lines.append(
                    f"| {index} | {section} | {name} | {entry['end_to_end_s']} | {entry.get('generate_s', '')} | "
                    f"{entry.get('mp4_write_s', '')} | {entry['first_preview_s']} | "
                    f"{entry['stage_1_decoded_s']} | {timings} | {entry['peak_gib']} | {_diffusers_writer(entry)} |"
                )
    return "\n".join(lines)


def _diffusers_writer(entry: dict) -> str:
    if "diffusers_mp4_write_s" not in entry:
        return ""
    return f"{entry['diffusers_mp4_write_s']} / {entry['end_to_end_diffusers_writer_s']}"


def components_table(results: list[dict]) -> str:
    lines = ["| file | measurement | value |", "|---|---|---|"]
    for index, result in enumerate(results, 1):
        named = ("env", "build", "components", "mode_24gb", "fp8", "backends", "attention_graphs")
        profiles = [section for section in result["sections"] if section.startswith("profile")]
        for section in (*named, *profiles):
            for key, value in result["sections"].get(section, {}).items():
                if isinstance(value, dict) and "t2av" in key:
                    continue
                if key in ("t2av", "a2v"):
                    continue
                lines.append(f"| {index} | {section}.{key} | {value} |")
    return "\n".join(lines)


def main() -> None:
    results = [json.load(open(path)) for path in sys.argv[1:]]
    print("### Transformer forward (batch 1, distilled pass)\n")
    print(forward_table(results))
    print("\n### Pipelines end to end (distilled, 768x512x121 @ 24 fps, stage 1 at 384x256)\n")
    print(e2e_table(results))
    print("\n### Components, environment, memory mode set-up\n")
    print(components_table(results))
    for index, result in enumerate(results, 1):
        for section, error in result.get("errors", {}).items():
            print(f"\nFile {index}, section {section} failed:\n```\n{error[-1500:]}\n```")


if __name__ == "__main__":
    main()
