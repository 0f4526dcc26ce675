"""edgekd: teacher -> transfer -> distill -> quantization-aware distillation -> export -> compile -> bench.

`import edgekd` is light on purpose: it imports neither torch nor any runtime (openvino, onnxruntime,
tensorrt). Modules that need one import it where it is used and raise :class:`edgekd.errors.MissingExtra`
naming the pip extra to install when it is absent.
"""

__version__ = "0.1.0"
