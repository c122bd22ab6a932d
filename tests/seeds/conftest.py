"""The seed tests' copy of the shipped seeds, with a catalogue written as a test needs it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from django.conf import settings


def seeds_copy_with_labels(tmp_path: Path) -> tuple[Path, dict, Callable[[], None]]:
    """A copy of the shipped seeds under ``tmp_path``, its ``labels.yaml`` read, and a function that writes the
    (edited) catalogue back into the copy."""
    target = tmp_path / "seeds"
    shutil.copytree(settings.CARTWATCH["SEEDS_DIR"], target)
    path = target / "labels.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def write() -> None:
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    return target, data, write
