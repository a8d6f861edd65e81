"""The saved-model folder shared by every estimator: ``model.safetensors`` + ``model.json``.

Weights are written first, the JSON (settings, fitted state, package version, model class)
last, each atomically, so a folder is either the previous complete model or the new one.
Safetensors instead of pickles: loading runs no code and survives torch's ``weights_only``
changes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from omicsembed._core import __version__
from omicsembed.exceptions import InvalidInputError, OmicsEmbedError
from omicsembed.io import atomic_path, write_json

__all__ = [
    "SETTINGS_FILE",
    "WEIGHTS_FILE",
    "damaged_model_errors",
    "read_model_folder",
    "write_model_folder",
]

WEIGHTS_FILE = "model.safetensors"
SETTINGS_FILE = "model.json"


def write_model_folder(
    folder: str | Path,
    model: str,
    meta: dict[str, Any],
    write_weights: Callable[[Path], object],
) -> Path:
    """Write a model folder; ``write_weights(path)`` writes the safetensors file.

    ``meta`` is stored in ``model.json`` with ``omicsembed_version`` and ``model`` added.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path} is a file; a model is saved into a folder")
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / WEIGHTS_FILE) as temporary:
        write_weights(temporary)
    write_json({"omicsembed_version": __version__, "model": model, **meta}, path / SETTINGS_FILE)
    return path


def read_model_folder(folder: str | Path, model: str) -> tuple[Path, dict[str, Any]]:
    """Check a model folder and return (weights path, settings JSON).

    Raises
    ------
    InvalidInputError
        If the folder lacks either file or holds another kind of model.

    """
    path = Path(folder)
    if not (path / SETTINGS_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise InvalidInputError(
            f"{path} does not hold a saved model ({SETTINGS_FILE}, {WEIGHTS_FILE})"
        )
    with damaged_model_errors(path):
        meta = json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{path / SETTINGS_FILE} does not hold model settings")
    if meta.get("model") != model:
        raise InvalidInputError(f"{path} holds a {meta.get('model')!r}, not a {model}")
    return path / WEIGHTS_FILE, meta


@contextlib.contextmanager
def damaged_model_errors(folder: str | Path) -> Iterator[None]:
    """Turn what a damaged model folder makes the loading code raise into InvalidInputError.

    A truncated or edited file (bad JSON, missing or extra keys, values of the wrong type,
    a truncated safetensors file) would otherwise surface as a KeyError, TypeError or
    SafetensorError from deep inside; errors of the package pass unchanged.
    """
    try:
        yield
    except OmicsEmbedError:
        raise
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        SafetensorError,
    ) as error:
        raise InvalidInputError(
            f"{folder} holds a damaged or incompatible model ({type(error).__name__}: {error})"
        ) from error
