"""Reading user-written YAML (always yaml.safe_load) and turning validation errors into one line."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.errors import UsageError
from edgekd.paths import require_file


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping; any problem is one actionable UsageError."""
    require_file(Path(path), what, "a YAML file")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must hold a mapping of fields, got {type(data).__name__}")
    return data


def read_model_json(path: Path, model: type[BaseModel], missing: str, invalid: str) -> BaseModel:
    """A JSON file validated as `model`; a missing file or invalid content is one UsageError.
    `invalid` may hold `{why}` for the first line of the validation error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(missing)
    try:
        return model.model_validate_json(path.read_bytes())
    except ValueError as exc:
        why = first_error(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        raise UsageError(invalid.format(why=why)) from None


def first_error(exc: ValidationError, unknown: str = "unknown field") -> str:
    """The first validation error as "unknown field 'a.b'" or "field 'a.b': message"."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{unknown} '{loc}'"
    return f"field '{loc}': {first['msg']}"
