"""An import stand-in for PyAV on a device machine without it (its wheel is 35 MB; a device command carries 64 MiB).

Training and the benchmarks' GPU runs never decode or write media, but `ltx_pipeline` imports `av` and reads
`av.container.InputContainer` and the like in annotations. Every attribute here, at any depth, is a class (callable,
usable in `X | None` and `except` clauses) that does nothing. Put `training/av_standin` on PYTHONPATH only where the
real PyAV is missing.
"""


class _Anything(type):
    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (Exception,), {})


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    return _Anything(name, (Exception,), {})
