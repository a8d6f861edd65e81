"""One training loop for every torch model of omicsembed.

Devices (auto/CPU/CUDA), epochs over caller-supplied batches, validation loss, early stopping with
best-weight restoration, progress bars, atomic checkpoints every N epochs (safetensors + JSON) and
resume (refused when the data or settings differ from the checkpoint's run). Models supply a loss
function and batch iterables; the loop knows nothing of AnnData.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from omicsembed._settings import settings
from omicsembed.exceptions import InvalidInputError
from omicsembed.io import atomic_path

__all__ = [
    "CHECKPOINT_FILE",
    "RunIdentity",
    "TrainingConfig",
    "TrainingState",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "train",
]

CHECKPOINT_FILE = "checkpoint.json"

#: A loss function gets one batch and returns (mean loss over the batch, number of items).
LossFunction = Callable[[Any], tuple[torch.Tensor, int]]
#: Batches of one epoch, given the epoch number (so samplers can reshuffle per epoch).
BatchSource = Callable[[int], Iterable[Any]]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda[:i]"`` into a torch device.

    ``"auto"`` (the default, from ``omicsembed.settings.device``) picks CUDA when available.

    Raises
    ------
    InvalidInputError
        If CUDA is requested but not available, or the name is not a device.

    """
    name = str(device if device is not None else settings.device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as error:
        raise InvalidInputError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was requested but CUDA is not available")
    return resolved


@dataclass
class TrainingConfig:
    """Settings of :func:`train`.

    Attributes
    ----------
    max_epochs
        Number of passes over the training batches (≥ 1).
    learning_rate, weight_decay
        Adam settings (weight decay is L2, as in ``torch.optim.Adam``).
    early_stopping_patience
        Stop after this many epochs without improvement of the monitored loss (validation loss
        when validation batches are given, else training loss); ``None`` disables it. The
        best weights are restored at the end.
    min_delta
        Smallest decrease of the monitored loss that counts as an improvement.
    checkpoint_dir
        Folder for checkpoints; ``None`` disables them.
    checkpoint_every
        Write a checkpoint every this many epochs (and at the end and on interruption).
    progress
        Show a progress bar; ``None`` uses ``omicsembed.settings.progress_bar``.
    description
        Label of the progress bar.

    """

    max_epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    early_stopping_patience: int | None = 10
    min_delta: float = 0.0
    checkpoint_dir: str | Path | None = None
    checkpoint_every: int = 10
    progress: bool | None = None
    description: str = "training"

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise InvalidInputError(f"max_epochs must be ≥ 1, got {self.max_epochs}")
        if self.checkpoint_every < 1:
            raise InvalidInputError(f"checkpoint_every must be ≥ 1, got {self.checkpoint_every}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise InvalidInputError(
                f"early_stopping_patience must be ≥ 1 or None, got {self.early_stopping_patience}"
            )
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InvalidInputError(f"learning_rate must be > 0, got {self.learning_rate}")


def _digest(array: Any) -> str:
    """BLAKE2b digest (hex) of a numeric array's values, not of how they are stored.

    Dense arrays: shape, dtype and C-order bytes, with every NaN (a missing value) one NaN and
    -0.0 as 0.0. Sparse matrices: the same of their canonical CSR form (int64 indices, sorted,
    no stored zeros), so a file rewritten with other index types gives the same digest.
    """
    digest = hashlib.blake2b(digest_size=16)
    if array is None:
        return "none"
    if sp.issparse(array):
        csr = sp.csr_array(array, copy=True)
        csr.eliminate_zeros()
        csr.sort_indices()
        parts = [csr.data, csr.indices.astype(np.int64), csr.indptr.astype(np.int64)]
        digest.update(f"sparse{csr.shape};".encode())
    else:
        parts = [np.asarray(array)]
    for part in parts:
        if part.dtype.kind == "O":
            raise InvalidInputError("object arrays have no digest of their values")
        if part.dtype.kind == "f":
            part = np.where(np.isnan(part), np.nan, part + 0.0)  # one NaN; -0.0 + 0.0 is 0.0
        part = np.ascontiguousarray(part)
        digest.update(f"{part.dtype.str}{part.shape};".encode())
        digest.update(part.data)
    return digest.hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    """What a resumed run must share with the run that wrote its checkpoint.

    Without it, resuming on other data of the same shape (or with another learning rate or
    seed) would silently continue a different run.

    Attributes
    ----------
    data
        BLAKE2b digest (hex) of each training array's values, by name (e.g. ``"matrix"``,
        ``"batch labels"``): shape, dtype and values, with NaN (missing) values as one NaN
        and sparse matrices in canonical form, so storage details do not count.
    settings
        The settings that define the run, as JSON values. Leave out those that only say how
        long to train (epochs, patience, checkpoint interval): they may change on resume.

    """

    data: dict[str, str]
    settings: dict[str, Any]

    @classmethod
    def of(cls, data: Mapping[str, Any], settings: Mapping[str, Any]) -> RunIdentity:
        """Return the identity of a run on ``data`` with ``settings``.

        ``data`` maps names to numeric numpy arrays, scipy sparse matrices or None (object
        arrays are not supported: their bytes are pointers); ``settings`` holds JSON-ready
        values (tuples become lists).
        """
        return cls(
            {name: _digest(array) for name, array in data.items()},
            json.loads(json.dumps(dict(settings), default=str)),
        )

    def check(self, stored: Mapping[str, Any], folder: Path) -> None:
        """Raise InvalidInputError if ``stored`` (a checkpoint's identity) is another run's.

        The message names the training arrays and the settings that differ (settings that
        only one side knows, e.g. added by a later version, are not compared).
        """
        before_data = stored.get("data") or {}
        if not isinstance(before_data, Mapping):  # not this version's form: cannot compare
            before_data = {}
        differ = [
            name
            for name, digest in self.data.items()
            if name in before_data and before_data[name] != digest
        ]
        before = stored.get("settings") or {}
        changed = [
            f"{key} {before[key]!r} → {self.settings[key]!r}"
            for key in sorted(set(before) & set(self.settings))
            if before[key] != self.settings[key]
        ]
        problems = []
        if differ:
            problems.append(f"on other data (the {' and the '.join(differ)} differ)")
        if changed:
            problems.append(f"with other settings ({', '.join(changed)})")
        if problems:
            raise InvalidInputError(
                f"the checkpoint in {folder} was written by a run {' and '.join(problems)}; "
                "resume with the data and settings it was trained with, or train afresh "
                "without resuming"
            )


@dataclass
class TrainingState:
    """Progress of a run: what a checkpoint stores besides the tensors."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def history_frame(self) -> pd.DataFrame:
        """Losses per epoch as a table (columns: epoch, train_loss[, validation_loss])."""
        return pd.DataFrame(self.history)


def _epoch_loss(
    module: torch.nn.Module,
    loss_function: LossFunction,
    batches: Iterable[Any],
    optimizer: torch.optim.Optimizer | None,
) -> float:
    """Mean loss over one pass (item-weighted); steps the optimizer when one is given."""
    total, count = 0.0, 0
    module.train(optimizer is not None)
    with torch.set_grad_enabled(optimizer is not None):
        for batch in batches:
            loss, n_items = loss_function(batch)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += float(loss.detach()) * n_items
            count += n_items
    if count == 0:
        raise InvalidInputError("an epoch produced no batches; is the data empty?")
    return total / count


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = optimizer.state_dict()
    tensors = {
        f"optimizer.{index}.{key}": value.detach().cpu().contiguous()
        for index, entries in state["state"].items()
        for key, value in entries.items()
        if isinstance(value, torch.Tensor)
    }
    return tensors, state["param_groups"]


def save_checkpoint(
    folder: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    best_weights: dict[str, torch.Tensor] | None,
    identity: RunIdentity | None = None,
) -> Path:
    """Write a checkpoint atomically and return the JSON path.

    Tensors go to ``checkpoint-epoch<NNNN>.safetensors`` (module weights, optimizer moments, best
    weights, torch RNG state); ``checkpoint.json`` is replaced last and points to it, so a crash at
    any moment leaves the previous complete checkpoint in place. ``identity`` is stored in the
    JSON, for :func:`load_checkpoint` to check.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    optimizer_tensors, param_groups = _optimizer_tensors(optimizer)
    tensors |= optimizer_tensors
    if best_weights is not None:
        tensors |= {f"best.{k}": v.detach().cpu().contiguous() for k, v in best_weights.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    name = f"checkpoint-epoch{state.epoch:05d}.safetensors"
    with atomic_path(folder / name) as temporary:
        save_file(tensors, temporary)
    manifest = {"tensors": name, "state": asdict(state), "param_groups": param_groups}
    if identity is not None:
        manifest["run"] = asdict(identity)
    with atomic_path(folder / CHECKPOINT_FILE) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))
    for old in folder.glob("checkpoint-epoch*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / CHECKPOINT_FILE


def load_checkpoint(
    folder: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    identity: RunIdentity | None = None,
) -> tuple[TrainingState, dict[str, torch.Tensor] | None]:
    """Restore module, optimizer and RNG from :func:`save_checkpoint`'s folder.

    With ``identity``, a checkpoint that stores one must be of the same run (same data and
    settings); one written without (by an earlier version) is resumed with a ``UserWarning``.

    Raises
    ------
    InvalidInputError
        If the folder has no checkpoint, the checkpoint is another run's (other data or
        settings), or it does not fit the module.

    """
    manifest_path = folder / CHECKPOINT_FILE
    if not manifest_path.is_file():
        raise InvalidInputError(
            f"no checkpoint to resume from in {folder} (missing {CHECKPOINT_FILE})"
        )
    manifest = json.loads(manifest_path.read_text())
    if identity is not None:
        if isinstance(manifest.get("run"), Mapping):
            identity.check(manifest["run"], folder)
        else:
            warnings.warn(
                f"the checkpoint in {folder} does not record its data and settings (written "
                "by an earlier version): resuming without checking that they are this run's",
                UserWarning,
                stacklevel=3,
            )
    tensors = load_file(folder / manifest["tensors"])
    weights = {k.removeprefix("module."): v for k, v in tensors.items() if k.startswith("module.")}
    try:
        module.load_state_dict(weights)
    except RuntimeError as error:
        raise InvalidInputError(
            f"checkpoint in {folder} does not fit this model (different data or settings?): {error}"
        ) from error
    device = next(module.parameters()).device
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            moved = value if name == "step" else value.to(device)
            optimizer_state.setdefault(int(index), {})[name] = moved
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": manifest["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
    return TrainingState(**manifest["state"]), (best or None)


@contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda **_: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total, losses="")

        def advance(**kwargs: Any) -> None:
            bar.update(task, **kwargs)

        yield advance


def train(
    module: torch.nn.Module,
    loss_function: LossFunction,
    train_batches: BatchSource,
    config: TrainingConfig,
    *,
    validation_batches: BatchSource | None = None,
    parameters: Iterable[torch.nn.Parameter] | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[TrainingState], None] | None = None,
    identity: RunIdentity | None = None,
) -> TrainingState:
    """Train ``module`` with Adam.

    Parameters
    ----------
    module
        The torch module, already on its device.
    loss_function
        Maps one batch to ``(mean loss, number of items)``; epoch losses are item-weighted means.
    train_batches, validation_batches
        ``epoch -> iterable of batches``; validation losses are computed without gradients.
    config
        Loop settings (:class:`TrainingConfig`).
    parameters
        Parameters to optimise (default: all of ``module``); pass a subset to freeze the rest.
    resume
        Continue from the checkpoint in ``config.checkpoint_dir`` (after its last epoch).
    on_epoch_end
        Called with the :class:`TrainingState` after every epoch (monitoring).
    identity
        The run's data and settings (:class:`RunIdentity`), stored in checkpoints; on resume a
        checkpoint of another run is refused.

    Returns
    -------
    TrainingState
        Epochs run, best loss and epoch, whether it stopped early, and the loss history.

    Raises
    ------
    InvalidInputError
        On resume without a checkpoint, with another run's or with one that does not fit, or
        when a loss is not finite.
    KeyboardInterrupt
        Re-raised after writing a checkpoint (when checkpointing is on), so the run can resume;
        the interrupted epoch is then run again from the weights at the interruption.

    """
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    params = list(parameters) if parameters is not None else list(module.parameters())
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    folder = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None
    state, best_weights = TrainingState(), None
    if resume:
        if folder is None:
            raise InvalidInputError("resume=True needs checkpoint_dir")
        state, best_weights = load_checkpoint(folder, module, optimizer, identity)
    show = settings.progress_bar if config.progress is None else config.progress
    patience = config.early_stopping_patience

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    with _progress(show, config.description, config.max_epochs) as advance:
        advance(completed=state.epoch)
        try:
            while state.epoch < config.max_epochs and not state.stopped_early:
                epoch = state.epoch
                train_loss = _epoch_loss(module, loss_function, train_batches(epoch), optimizer)
                record = {"epoch": float(epoch + 1), "train_loss": train_loss}
                monitored = train_loss
                if validation_batches is not None:
                    monitored = _epoch_loss(module, loss_function, validation_batches(epoch), None)
                    record["validation_loss"] = monitored
                if not math.isfinite(monitored):
                    raise InvalidInputError(
                        f"loss became {monitored} at epoch {epoch + 1}; lower the learning rate "
                        "or check the data for extreme values"
                    )
                state.history.append(record)
                state.epoch = epoch + 1
                if monitored < state.best_loss - config.min_delta:
                    state.best_loss, state.best_epoch = monitored, state.epoch
                    state.epochs_without_improvement = 0
                    best_weights = snapshot()
                else:
                    state.epochs_without_improvement += 1
                    if patience is not None and state.epochs_without_improvement >= patience:
                        state.stopped_early = True
                losses = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
                advance(completed=state.epoch, losses=losses)
                if on_epoch_end is not None:
                    on_epoch_end(state)
                if folder is not None and state.epoch % config.checkpoint_every == 0:
                    save_checkpoint(folder, module, optimizer, state, best_weights, identity)
        except KeyboardInterrupt:
            if folder is not None:
                save_checkpoint(folder, module, optimizer, state, best_weights, identity)
            raise
    if folder is not None:
        save_checkpoint(folder, module, optimizer, state, best_weights, identity)
    if best_weights is not None:
        module.load_state_dict(best_weights)
    return state
