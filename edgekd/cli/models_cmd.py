"""`edgekd models`: the architectures edgekd can build, or one model's layer paths (for --attention/--hint)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from edgekd.cli.common import console, guarded, print_json


@guarded
def models(
    arch: Annotated[Optional[str], typer.Argument(help="Show this architecture's layers.")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="List layer paths with output shapes (needs ARCH).")] = False,
    input_size: Annotated[int, typer.Option(help="Square input size used to compute the shapes.")] = 32,
    channels: Annotated[int, typer.Option(help="Input channels.")] = 3,
    num_classes: Annotated[int, typer.Option(help="Classes of the head.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List model names, or (with ARCH --layers) each layer path and its output shape, to pick
    attention-transfer and hint pairs."""
    from edgekd.errors import UsageError, require

    require("torch", "train", "building models needs PyTorch")
    from edgekd.models.registry import build_model, list_models, model_family

    if arch is None:
        names = list_models()
        _emit(names, as_json, f"edgekd models ({len(names)}; timm:<name> too when timm is installed)",
              ("name", "family"), [(n, model_family(n)) for n in names])
        return
    if not layers:
        raise UsageError("give --layers to list the layers of a model (or no ARCH to list model names)")
    import torch

    model = build_model(arch, num_classes=num_classes, in_channels=channels, input_size=input_size).eval()
    shapes: dict[str, list[int]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=name: shapes.__setitem__(n, list(out.shape)))
             for name, m in model.named_modules() if name]
    with torch.no_grad():
        model(torch.zeros(1, channels, input_size, input_size))
    for h in hooks:
        h.remove()
    _emit(shapes, as_json, f"{arch} layers at {channels}x{input_size}x{input_size}", ("layer path", "output shape"),
          [(name, "x".join(map(str, shape[1:]))) for name, shape in shapes.items()])


def _emit(data: object, as_json: bool, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """`data` as JSON, or `rows` as a rich table."""
    if as_json:
        print_json(data)
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
