"""One rank of a context-parallel tiny-model run, started by torchrun from tests/test_parallel.py.

Rank 0 saves the clip and, for every rank, how many video tokens its transformer saw, to `--output` (npz).
"""

import argparse

import numpy as np
import torch
import torch.distributed as dist

from ltx_pipeline import TI2VidTwoStagesPipeline
from ltx_pipeline.conditioning import ImageCondition
from ltx_pipeline.parallel import ParallelRunner, enable_context_parallel, init_distributed, teardown
from ltx_pipeline.tiny import build_tiny_components
from ltx_pipeline.types import Finished


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attention", default="ulysses")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--num-frames", type=int, default=9)
    parser.add_argument("--mode", default="distilled")
    parser.add_argument("--cancel-at-event", type=int, default=0, help="rank 0 cancels after this many events")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, bf16)")
    parser.add_argument("--with-reference", action="store_true", help="rank 0 first runs the request in one process")
    parser.add_argument("--serve", action="store_true", help="app flow: ranks > 0 serve; rank 0 sends 2 requests")
    parser.add_argument("--image", action="store_true", help="condition frame 0 on a still (per-token timesteps)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)

    # A short collective timeout: a rank left waiting fails within 2 minutes instead of the default 10-30.
    context = init_distributed(backend="nccl" if args.device == "cuda" else "gloo", timeout_s=120)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    pipe = TI2VidTwoStagesPipeline(**build_tiny_components("2.3", seed=0)).to(context.device, dtype)
    pipe.vocoder.float()
    if args.device == "cuda" and args.attention == "ring":
        pipe.transformer.set_attention_backend("_native_cudnn")
    request = {
        "prompt": "a red ball bounces on a metal floor",
        "height": args.height,
        "width": args.width,
        "num_frames": args.num_frames,
        "seed": 0,
        "mode": args.mode,
        "num_inference_steps": 2 if args.mode == "dev" else None,
        "preview_audio": False,
    }
    if args.image:
        still = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
        request["images"] = [ImageCondition(still, frame_index=0, strength=1.0)]
    reference = None
    if args.with_reference and context.is_main:
        reference = pipe(**request)
    enable_context_parallel(pipe, context, attention=args.attention)
    tokens_seen = []
    pipe.transformer.proj_in.register_forward_hook(lambda module, inputs, output: tokens_seen.append(output.shape[1]))

    runner = ParallelRunner({"t2av": pipe}, context)
    output, num_events, refused = None, 0, ""
    if args.serve and not context.is_main:
        runner.serve()
    else:
        if args.serve:
            try:
                runner.stream("t2av", **request | {"prompt": ""})  # refused by every rank's pipeline
            except ValueError as error:
                refused = str(error)
        for event in runner.stream("t2av", **request):
            num_events += 1
            if num_events == args.cancel_at_event:
                runner.cancel()
            if isinstance(event, Finished):
                output = event.output
        if args.serve:
            runner.close()

    counts = [None] * context.world_size
    dist.all_gather_object(counts, tokens_seen)
    if context.is_main:
        result = {"tokens_seen": np.array(counts), "num_events": num_events, "refused": refused}
        if output is not None:
            result |= {"frames": output.frames, "audio": output.audio.waveform.numpy()}
        if reference is not None:
            result |= {"reference_frames": reference.frames, "reference_audio": reference.audio.waveform.numpy()}
        np.savez(args.output, **result)
    teardown(context)


if __name__ == "__main__":
    main()
