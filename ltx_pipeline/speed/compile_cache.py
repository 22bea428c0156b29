"""torch.compile's caches kept where they outlive the process and the machine's /tmp.

Compiled options (`SpeedOptions.compile`, `compile_vae`) pay a first-call compile per shape. torch caches what it
compiles (inductor's graphs and kernels, AOTAutograd's graphs, Triton's binaries), by default under /tmp, which a
reboot or a fresh container empties; kept in the user's cache folder instead, a restarted command line or studio loads
them rather than compiling again (dynamo's tracing and the CUDA graphs' recording still run in each process).
"""

import logging
import os
from pathlib import Path

import torch
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from .. import constants

logger = logging.getLogger(__name__)


def compile_cache_dir() -> Path:
    """`LTX_COMPILE_CACHE_DIR` if set, else `constants.COMPILE_CACHE_DIR` (in the user's cache folder)."""
    return Path(os.environ.get("LTX_COMPILE_CACHE_DIR", constants.COMPILE_CACHE_DIR)).expanduser()


def use_persistent_compile_cache(directory: Path | None = None) -> Path:
    """Points torch's compile caches into `directory` (default `compile_cache_dir()`) and turns them on; returns it.

    A cache folder the user already chose through torch's own variables (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR)
    is kept. Call it before the first compile of the process.
    """
    directory = Path(directory) if directory is not None else compile_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if not _chosen_by_user(os.environ.get("TORCHINDUCTOR_CACHE_DIR")):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory / "inductor")
    os.environ.setdefault("TRITON_CACHE_DIR", str(directory / "triton"))
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    logger.info("torch.compile caches in %s.", os.environ["TORCHINDUCTOR_CACHE_DIR"])
    return directory


def _chosen_by_user(inductor_cache_dir: str | None) -> bool:
    """Whether TORCHINDUCTOR_CACHE_DIR names a folder of the user's choosing. Inductor writes its own default (under
    /tmp) into that variable the first time it looks for its folder, which importing diffusers' models already does,
    so a value equal to that default is torch's, not the user's."""
    if inductor_cache_dir is None:
        return False
    return os.path.abspath(inductor_cache_dir) != os.path.abspath(default_cache_dir())
