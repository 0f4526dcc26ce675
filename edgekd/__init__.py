"""edgekd: teacher -> transfer -> distill -> quantization-aware distillation -> export -> compile -> bench.

`import edgekd` is light on purpose: it imports neither torch nor any runtime (openvino, onnxruntime,
tensorrt). Modules that need one import it where it is used and raise :class:`edgekd.errors.MissingExtra`
naming the pip extra to install when it is absent.
"""

__version__ = "0.1.0"

_API = ("compress", "bench", "gate", "export_bundle", "eval")


def __getattr__(name: str):
    """`edgekd.compress(...)` and the other API functions (edgekd.api), imported on first use so that
    `import edgekd` stays light."""
    if name in _API:
        from edgekd import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
