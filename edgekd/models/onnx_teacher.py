"""An ONNX model as a teacher: logits from ONNX Runtime, for distillation only.

It has no parameters and no layers to hook, so it is never trained (the finetune stage keeps it as it is and
its classes must match the data), never pruned (the search uses the family alone) and gives no hints or
attention maps. Inputs are the same preprocessed float batches every model of the run sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.errors import UsageError, require


class OnnxTeacher(nn.Module):
    edgekd_onnx = True

    def __init__(self, path: Path, name: str) -> None:
        super().__init__()
        import onnx

        self.path, self.name = Path(path), name
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:  # noqa: BLE001 - protobuf errors on a damaged file
            raise UsageError(f"{name} is not a readable ONNX model ({str(exc)[:160]})") from None
        init = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in init]
        if len(inputs) != 1 or len(graph.output) < 1:
            raise UsageError(f"{name} has {len(inputs)} inputs and {len(graph.output)} outputs; an ONNX teacher "
                             "takes one image batch (N, C, H, W) and returns logits first")
        self.input_name = inputs[0].name
        self.input_dims = [d.dim_value if d.HasField("dim_value") else None
                           for d in inputs[0].type.tensor_type.shape.dim]
        out = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
        if len(self.input_dims) != 4:
            raise UsageError(f"{name} takes a rank-{len(self.input_dims)} input; an image teacher takes (N, C, H, W)")
        self.num_classes = out[-1] if len(out) == 2 else None
        self._session = None

    def __getstate__(self):  # a deepcopy or a spawn does not copy the session
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    def check_fits(self, num_classes: int, in_channels: int, input_size: tuple[int, int] | None = None) -> None:
        n, c, h, w = self.input_dims
        if c is not None and c != in_channels:
            raise UsageError(f"{self.name} takes {c} channels and the data has {in_channels}")
        if self.num_classes is not None and self.num_classes != num_classes:
            raise UsageError(f"{self.name} predicts {self.num_classes} classes and the data has {num_classes}: an "
                             "ONNX teacher cannot be fine-tuned to other classes; give data with its classes "
                             "(--teacher-classes FILE checks their names) or a PyTorch teacher")
        if input_size is not None:
            if h is None or w is None:
                return
            if (h, w) != tuple(input_size):
                raise UsageError(f"{self.name} takes {h}x{w} images and the run's input size is "
                                 f"{input_size[0]}x{input_size[1]}: pass --input-size {h}x{w}")

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        h, w = self.input_dims[2:]
        return (h, w) if h and w else None

    def session(self):
        if self._session is None:
            ort = require("onnxruntime", "cpu", "an ONNX teacher runs on ONNX Runtime")
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).numpy()
        sess = self.session()
        if self.input_dims[0] not in (None, arr.shape[0]):  # a fixed batch (often 1): run it chunk by chunk
            step = self.input_dims[0]
            outs = []
            for i in range(0, len(arr), step):
                chunk = arr[i:i + step]
                n = len(chunk)
                if n < step:  # the last, partial chunk: padded with copies of its last image, their logits dropped
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
                outs.append(sess.run(None, {self.input_name: chunk})[0][:n])
            logits = np.concatenate(outs)
        else:
            logits = sess.run(None, {self.input_name: arr})[0]
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(x.device)
