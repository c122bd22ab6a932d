"""Reading a seed file that is read at run time as well as at load time (labels, analytes)."""

from __future__ import annotations

from pathlib import Path

import yaml


def yaml_read(path: Path, error: type[Exception]) -> object:
    """The file's YAML content; ``error`` (the catalogue's own exception) when it cannot be read or parsed."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read: {exc}") from exc
