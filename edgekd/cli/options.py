"""Typer parameters derived from a pydantic options model: one flag per field, the field's description as help.

`edgekd compress` takes its options from :class:`edgekd.plan.CompressOptions` through :func:`option_parameters`,
so a field added there gets its flag (and its YAML key) with no edit here. The rules:

* ``--field-name`` for ``field_name``; booleans ``--x/--no-x``; lists repeatable; ``Literal`` choices checked;
* ``json_schema_extra={"cli": {...}}`` (``edgekd.plan._cli``) adds a short alias, types the value as a file
  path, or takes it as text for the field's own validator (``--input-size 32x48``);
* every flag defaults to None ("not given"), so a YAML pipeline file's value stands unless a flag overrides it;
  the field's own default is shown in the help.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _cli_extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return dict(extra.get("cli") or {})


def _strip_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _cli_type(info: FieldInfo) -> Any:
    extra = _cli_extra(info)
    base = _strip_none(info.annotation)
    if extra.get("path"):
        return Path
    if extra.get("text") or typing.get_origin(base) is tuple:
        return str
    if typing.get_origin(base) is list:
        return list[str]
    if typing.get_origin(base) is Literal and not all(isinstance(v, str) for v in typing.get_args(base)):
        return type(typing.get_args(base)[0])  # e.g. Literal[1, -1]: an int, checked by the model
    return base


def _help(info: FieldInfo) -> str:
    text = info.description or ""
    default = info.default
    if "Default" not in text and default is not PydanticUndefined and default is not None \
            and not isinstance(default, bool):
        text = f"{text} Default: {default}."
    return text


def option_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only ``Annotated[Optional[T], typer.Option(...)] = None`` parameter per model field."""
    params = []
    for name, info in model.model_fields.items():
        kind = _cli_type(info)
        flag = flag_name(name)
        decls = [f"{flag}/--no-{flag[2:]}" if kind is bool else flag]
        if _cli_extra(info).get("short"):
            decls.append(_cli_extra(info)["short"])
        option = typer.Option(*decls, help=_help(info), show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[kind], option]))
    return params


def given(values: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields among ``values`` that were given on the command line, paths as text."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()
            if k in model.model_fields and v is not None}
