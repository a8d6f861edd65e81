"""Shared skeleton of omicsembed's torch estimators, and the VAE training wiring.

:class:`TorchModel` holds what every torch estimator has: a settings dataclass (the
constructor's hyperparameters, saved as JSON), the device and progress choice, the fitted torch
module ``network_`` with a JSON-serialisable fitted state (feature names, loss history and
model extras), ``history_`` / ``feature_names_``, and ``save`` / ``load`` through the shared
model folder. :class:`VAEModel` adds what the VAE family shares on top of
:class:`omicsembed.nn.vae.VariationalAutoencoder`: the seeded cell split, KL warm-up, minibatches
of cells read from dense or CSR matrices (one minibatch densified at a time), covariate codes,
per-epoch monitoring, and chunked encoding of many cells.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from safetensors.torch import load_file, save_file
from scipy import sparse

from omicsembed._seeds import TORCH_SEEDS, int_seed
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models._data import RowMatrix, match_features, row_batches
from omicsembed.models._folder import damaged_model_errors, read_model_folder, write_model_folder
from omicsembed.nn.vae import VariationalAutoencoder, kl_warmup_weight
from omicsembed.train.loop import (
    RunIdentity,
    TrainingConfig,
    TrainingState,
    resolve_device,
    train,
)

__all__ = [
    "FittedState",
    "TorchModel",
    "TrainingSettings",
    "VAEModel",
    "VAESettings",
    "row_tensor",
]


def row_tensor(matrix: RowMatrix, rows: np.ndarray | slice, device: torch.device) -> torch.Tensor:
    """Rows of a dense or CSR matrix as a float32 tensor on ``device`` (only those densified)."""
    block: Any = matrix[rows]
    dense = block.toarray() if sparse.issparse(block) else block
    return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(device)


@dataclass
class TrainingSettings:
    """Training hyperparameters shared by the torch estimators (see :class:`TrainingConfig`)."""

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int | None = 100
    validation_fraction: float = 0.1
    early_stopping_patience: int | None = 10
    checkpoint_every: int = 10
    seed: int = 0

    def check(self) -> None:
        """Validate the shared fields.

        Raises
        ------
        InvalidInputError
            A batch size < 1, a validation fraction outside [0, 1), a negative weight decay,
            a seed that is not an int in [0, 2**63), or loop settings :class:`TrainingConfig`
            rejects.

        """
        int_seed(self.seed, below=TORCH_SEEDS)
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise InvalidInputError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.weight_decay < 0:
            raise InvalidInputError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        self.config(1 if self.max_epochs is None else self.max_epochs)

    def config(
        self,
        max_epochs: int,
        *,
        checkpoint_dir: str | Path | None = None,
        progress: bool | None = None,
        description: str = "training",
    ) -> TrainingConfig:
        """Return the :class:`TrainingConfig` of a run of ``max_epochs`` epochs."""
        return TrainingConfig(
            max_epochs=max_epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            early_stopping_patience=self.early_stopping_patience,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
            progress=progress,
            description=description,
        )


@dataclass
class FittedState:
    """What a fitted estimator keeps besides its weights (saved as JSON beside them).

    Attributes
    ----------
    feature_names
        Features (genes) in column order.
    history
        One record per epoch (``epoch``, ``train_loss``, ``validation_loss``).

    """

    feature_names: list[str]
    history: list[dict[str, float]] = field(default_factory=list)


SettingsT = TypeVar("SettingsT", bound=TrainingSettings)
NetworkT = TypeVar("NetworkT", bound=torch.nn.Module)
StateT = TypeVar("StateT", bound=FittedState)


class TorchModel(Generic[SettingsT, NetworkT, StateT]):
    """Base of the torch estimators: settings, device, fitted network and state, save/load.

    Subclasses set :attr:`model_name` and :attr:`state_class`, build their settings in
    ``__init__`` and pass them here, and implement :meth:`_network_sizes` and
    :meth:`_build_network` (what :meth:`load` needs to rebuild the module).
    """

    model_name: ClassVar[str]
    state_class: ClassVar[type[FittedState]] = FittedState

    def __init__(
        self, settings: SettingsT, *, device: str = "auto", progress: bool | None = None
    ) -> None:
        self.settings = settings
        self._check_settings()
        self.device = resolve_device(device)
        self.progress = progress
        self.network_: NetworkT | None = None
        self._state: StateT | None = None

    def _check_settings(self) -> None:
        self.settings.check()

    def _fitted(self) -> tuple[NetworkT, StateT]:
        if self.network_ is None or self._state is None:
            raise InvalidInputError(f"this {self.model_name} is not fitted; call fit() first")
        return self.network_, self._state

    @property
    def history_(self) -> pd.DataFrame:
        """Loss per epoch (``epoch``, ``train_loss``, ``validation_loss``)."""
        return pd.DataFrame(self._fitted()[1].history)

    @property
    def feature_names_(self) -> list[str]:
        """Features (genes) the model was fitted on, in column order."""
        return list(self._fitted()[1].feature_names)

    def _params(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self.settings).items()
        }

    def _run_identity(
        self, checkpoint_dir: str | Path | None, data: dict[str, Any]
    ) -> RunIdentity | None:
        """Return the run's identity for its checkpoints (None without ``checkpoint_dir``).

        The training arrays (``data``, by name) and every setting except those saying how
        long to train (``max_epochs``, ``early_stopping_patience``, ``checkpoint_every``),
        which may change when a run is resumed.
        """
        if checkpoint_dir is None:
            return None
        how_long = {"max_epochs", "early_stopping_patience", "checkpoint_every"}
        kept = {k: v for k, v in self._params().items() if k not in how_long}
        return RunIdentity.of(data, {"model": type(self).__name__, **kept})

    def _network_sizes(self) -> dict[str, Any]:
        """Return the network sizes the settings do not fix (saved with the model)."""
        raise NotImplementedError

    def _build_network(self, sizes: dict[str, Any], state: StateT) -> NetworkT:
        """Return a fresh network for the saved ``sizes`` and ``state`` (weights loaded after)."""
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder`` (safetensors weights + JSON settings and state).

        Files are written atomically (temporary file, then rename), the JSON last.

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InvalidInputError
            If the model is not fitted.

        """
        network, state = self._fitted()
        tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        meta = {"settings": self._params(), "sizes": self._network_sizes(), "state": asdict(state)}
        return write_model_folder(
            folder, self.model_name, meta, lambda target: save_file(tensors, target)
        )

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str = "auto", progress: bool | None = None
    ) -> Self:
        """Restore a model written by :meth:`save` (weights bit for bit).

        Raises
        ------
        InvalidInputError
            If the folder does not hold a saved model of this class, its files do not match
            or are damaged, or the weights are not finite.

        """
        weights, meta = read_model_folder(folder, cls.model_name)
        with damaged_model_errors(folder):
            model = cls(**meta["settings"], device=device, progress=progress)
            known = {f.name for f in fields(cls.state_class)}
            state = cls.state_class(**{k: v for k, v in meta["state"].items() if k in known})
            network = model._build_network(meta["sizes"], state)  # type: ignore[arg-type]
            tensors = load_file(weights)
        bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
        if bad:
            raise InvalidInputError(f"{weights} holds NaN or infinite values in {bad[:3]}")
        try:
            network.load_state_dict(tensors)
        except RuntimeError as error:
            raise InvalidInputError(
                f"{weights} does not match the settings saved beside it: {error}"
            ) from error
        model.network_ = network.to(model.device).eval()
        model._state = state  # type: ignore[assignment]
        return model


VAENetworkT = TypeVar("VAENetworkT", bound=VariationalAutoencoder)


@dataclass
class VAESettings(TrainingSettings):
    """Training settings of the VAE family: adds the KL warm-up (epochs; None: none)."""

    n_epochs_kl_warmup: int | None = None

    def check(self) -> None:
        """Validate; see :meth:`TrainingSettings.check` (also a negative warm-up)."""
        super().check()
        if self.n_epochs_kl_warmup is not None and self.n_epochs_kl_warmup < 0:
            raise InvalidInputError(
                f"n_epochs_kl_warmup must be ≥ 0, got {self.n_epochs_kl_warmup}"
            )


VAESettingsT = TypeVar("VAESettingsT", bound=VAESettings)


class VAEModel(TorchModel[VAESettingsT, VAENetworkT, StateT]):
    """Base of the VAE estimators: training on rows of cells, encoding in chunks.

    :attr:`uses_batch_norm` (class attribute) makes minibatches and the validation split hold
    at least two cells.
    """

    uses_batch_norm: ClassVar[bool] = False
    chunk_size: ClassVar[int] = 4096  # cells per forward pass when encoding many cells

    def kl_weight(self, epoch: int) -> float:
        """KL warm-up weight of the latent term at 0-based ``epoch``: min(1, epoch / warm-up)."""
        return kl_warmup_weight(epoch, self.settings.n_epochs_kl_warmup)

    def _split(self, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeded (training rows, validation rows), each sorted."""
        fraction = self.settings.validation_fraction
        if fraction == 0:
            return np.arange(n_cells), np.arange(0)
        minimum = 2 if self.uses_batch_norm else 1
        n_validation = max(minimum, round(fraction * n_cells))
        if n_validation > n_cells - minimum:
            raise InvalidInputError(
                f"{n_cells} cells are too few to hold out validation_fraction={fraction}; "
                "use validation_fraction=0"
            )
        order = np.random.default_rng([self.settings.seed, 1]).permutation(n_cells)
        return np.sort(order[n_validation:]), np.sort(order[:n_validation])

    def _train_network(
        self,
        network: VAENetworkT,
        matrix: RowMatrix,
        *,
        max_epochs: int,
        description: str,
        batch_codes: np.ndarray | None = None,
        state: Callable[[list[dict[str, float]]], StateT],
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        monitor: Callable[[Self, int], None] | None = None,
    ) -> None:
        """Train ``network`` (on its device) on the rows of ``matrix`` and keep it fitted.

        Minibatches of cells are shuffled per epoch (``default_rng([seed, epoch])``); the
        training loss uses the KL warm-up weight of the epoch, the validation loss (cells held
        out by :meth:`_split`) the full weight and the same noise every epoch, so epochs are
        compared on equal terms. ``state(history)`` builds the fitted state; with ``monitor``
        the model is usable (e.g. can ``generate``) in every ``monitor(model, epoch)`` call.
        """
        s = self.settings
        train_rows, validation_rows = self._split(matrix.shape[0])
        validation_noise = torch.Generator(device=self.device)
        codes = None if batch_codes is None else torch.as_tensor(batch_codes, dtype=torch.long)
        current = {"kl_weight": 1.0}

        def loss(rows: np.ndarray) -> tuple[torch.Tensor, int]:
            x = row_tensor(matrix, rows, self.device)
            batch_index = None if codes is None else codes[rows].to(self.device)
            if network.training:
                terms = network.loss(x, kl_weight=current["kl_weight"], batch_index=batch_index)
            else:
                terms = network.loss(x, generator=validation_noise, batch_index=batch_index)
            return terms.total.mean(), int(rows.size)

        def batches(rows: np.ndarray, epoch: int, shuffle: bool) -> list[np.ndarray]:
            return row_batches(
                rows,
                s.batch_size,
                seed=s.seed,
                epoch=epoch,
                shuffle=shuffle,
                fold_single_last=self.uses_batch_norm,
            )

        def train_batches(epoch: int) -> Iterable[np.ndarray]:
            current["kl_weight"] = self.kl_weight(epoch)
            return batches(train_rows, epoch, shuffle=True)

        def validation_batches(epoch: int) -> Iterable[np.ndarray]:
            validation_noise.manual_seed(s.seed + 1)
            return batches(validation_rows, 0, shuffle=False)

        on_epoch_end = None
        if monitor is not None:

            def on_epoch_end(progress: TrainingState) -> None:
                network.eval()  # the next epoch switches it back to training mode
                # the model as trained so far, with its history, so that a snapshot the
                # monitor keeps has its epochs
                self.network_ = network
                self._state = state(list(progress.history))
                monitor(self, progress.epoch)

        before = (self.network_, self._state)
        try:
            result = train(
                network,
                loss,
                train_batches,
                s.config(
                    max_epochs,
                    checkpoint_dir=checkpoint_dir,
                    progress=self.progress,
                    description=description,
                ),
                validation_batches=validation_batches if validation_rows.size else None,
                resume=resume,
                on_epoch_end=on_epoch_end,
                identity=self._run_identity(
                    checkpoint_dir, {"matrix": matrix, "batch labels": batch_codes}
                ),
            )
        except BaseException:
            # a failed, refused or interrupted fit leaves the model as it was (a monitor
            # saw the network in training)
            self.network_, self._state = before
            raise
        self.network_ = network.eval()
        self._state = state(result.history)

    def _read(self, data: AnnData | RowMatrix, *, layer: str | None, what: str) -> RowMatrix:
        """Return the validated matrix of ``data`` (counts, binary values, ...)."""
        raise NotImplementedError

    def _cells(
        self, data: AnnData | RowMatrix, layer: str | None, what: str = "the cells"
    ) -> RowMatrix:
        """Return validated new cells with the fitted features (AnnData columns by name).

        Raises
        ------
        InvalidInputError
            Fitted features missing from AnnData, or invalid values.
        ShapeMismatchError
            An array whose number of columns differs from the fitted features.

        """
        _, state = self._fitted()
        if isinstance(data, AnnData):
            data = match_features(data, state.feature_names)
        elif len(np.shape(data)) != 2 or np.shape(data)[1] != len(state.feature_names):
            raise ShapeMismatchError(
                f"{what}: expected {len(state.feature_names)} features (columns), got shape "
                f"{np.shape(data)}"
            )
        return self._read(data, layer=layer, what=what)

    def _chunks(
        self, matrix: RowMatrix, size: int | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first row, float32 tensor of rows)`` over ``matrix`` in chunks on the device."""
        step = size or self.chunk_size
        for start in range(0, matrix.shape[0], step):
            yield start, row_tensor(matrix, slice(start, start + step), self.device)
