"""Reading AnnData and tables, and writing results atomically into a result folder.

Reading: :func:`read_anndata` accepts ``.h5ad`` and samples x genes tables (``.csv``, ``.tsv``,
optionally gzip-compressed, and ``.parquet``; read with polars).

Writing: :func:`write_table` (Parquet + CSV), :func:`write_json`, :func:`save_figure` and
:func:`write_h5ad` are atomic: they write a temporary file in the destination folder and move it
into place with :func:`os.replace`, so a crash or an error never leaves a half-written result
(and never a stray temporary file). :class:`ResultFolder` bundles them for one output folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from omicsembed.exceptions import InvalidInputError

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

__all__ = [
    "ResultFolder",
    "anndata_matrix",
    "atomic_path",
    "read_anndata",
    "save_figure",
    "staged_result_folder",
    "write_h5ad",
    "write_json",
    "write_table",
]

_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".csv.gz": ",", ".tsv.gz": "\t"}
_NULL_VALUES = ["", "NA", "NaN", "nan", "N/A", "NULL", "null"]


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def anndata_matrix(data: Any, layer: str | None) -> Any:
    """Return the matrix a function reads: ``.X`` or ``.layers[layer]`` of AnnData, else ``data``.

    Parameters
    ----------
    data
        AnnData, or a matrix (array or scipy sparse), returned as it is.
    layer
        Layer of AnnData ``data`` to read instead of ``.X``; only for AnnData.

    Raises
    ------
    InvalidInputError
        An unknown layer (the message lists the layers), AnnData without ``.X`` and no
        ``layer``, or ``layer`` with a matrix.

    """
    import anndata as ad

    if not isinstance(data, ad.AnnData):
        if layer is not None:
            raise InvalidInputError("layer= only applies to AnnData input")
        return data
    if layer is None:
        if data.X is None:
            raise InvalidInputError("the AnnData object has no .X; pass layer= to use a layer")
        return data.X
    if layer not in data.layers:
        raise InvalidInputError(
            f"layer {layer!r} not found; available layers: {sorted(data.layers)}"
        )
    return data.layers[layer]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in (".csv.gz", ".tsv.gz"):
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def read_anndata(
    path: str | os.PathLike[str], *, groupby: str | Sequence[str] | None = None
) -> ad.AnnData:
    """Read a samples x genes dataset as :class:`anndata.AnnData`.

    Parameters
    ----------
    path
        ``.h5ad`` (read with :func:`anndata.read_h5ad`), or a table ``.csv`` / ``.tsv`` (also
        ``.csv.gz`` / ``.tsv.gz``) / ``.parquet`` with samples as rows and a header line. The
        first column holds the sample ids (unique). Numeric columns are genes and become ``X``
        (float64; empty cells and ``NA``/``NaN`` become NaN). Columns holding text are sample
        metadata and become ``.obs`` (as strings).
    groupby
        Name of a column holding sample groups (e.g. tissue or cancer type), or several names
        (e.g. the label columns of a cell-type annotation). Each must exist (in the table, or
        in ``.obs`` of an ``.h5ad``); in a table it always goes to ``.obs``, even when its
        values are numbers, and it is stored as a categorical.

    Returns
    -------
    anndata.AnnData
        ``n_samples x n_genes``; ``obs_names`` are the sample ids, ``var_names`` the gene
        column names.

    Raises
    ------
    InvalidInputError
        If the file does not exist, its extension is not one of the above, its content cannot
        be parsed, the sample ids are missing or duplicated, no numeric gene column remains,
        ``groupby`` is not a column (the message lists the available columns), or a gene
        column mixes numbers with text (the message names the column, the sample and the
        offending value).

    """
    groups = (groupby,) if isinstance(groupby, str) else tuple(groupby or ())
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(
            f"input file {str(p)!r} does not exist (or is not a file); check the path"
        )
    suffix = _suffix(p)
    if suffix == ".h5ad":
        return _read_h5ad(p, groups)
    if suffix in _TABLE_SUFFIXES:
        try:
            df = pl.read_csv(
                p,
                separator=_TABLE_SUFFIXES[suffix],
                infer_schema_length=None,
                null_values=_NULL_VALUES,
            )
        except Exception as exc:
            raise InvalidInputError(
                f"cannot parse {str(p)!r} as a {suffix} table with a header line: {exc}"
            ) from exc
        return _table_to_anndata(df, p, groups)
    if suffix == ".parquet":
        try:
            df = pl.read_parquet(p)
        except Exception as exc:
            raise InvalidInputError(f"cannot read {str(p)!r} as Parquet: {exc}") from exc
        return _table_to_anndata(df, p, groups)
    raise InvalidInputError(
        f"unknown file extension {suffix!r} of {str(p)!r}; expected .h5ad, .csv, .tsv, "
        ".csv.gz, .tsv.gz or .parquet"
    )


def _read_h5ad(p: Path, groups: tuple[str, ...]) -> ad.AnnData:
    import anndata as ad

    try:
        adata = ad.read_h5ad(p)
    except Exception as exc:
        raise InvalidInputError(f"cannot read {str(p)!r} as .h5ad: {exc}") from exc
    for groupby in groups:
        if groupby not in adata.obs.columns:
            raise InvalidInputError(
                f"groupby column {groupby!r} is not in .obs of {str(p)!r}; available .obs "
                f"columns: {list(map(str, adata.obs.columns))}"
            )
    return adata


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null


def _table_to_anndata(df: pl.DataFrame, p: Path, groups: tuple[str, ...]) -> ad.AnnData:
    import anndata as ad

    if df.width < 2:
        raise InvalidInputError(
            f"{str(p)!r} has {df.width} column(s); expected sample ids in the first column "
            "followed by gene columns (is the separator right?)"
        )
    if df.height == 0:
        raise InvalidInputError(f"{str(p)!r} has a header but no sample rows")
    dup_cols = [c for c in df.columns if "_duplicated_" in c]
    if dup_cols:
        raise InvalidInputError(f"{str(p)!r} has duplicated column names: {dup_cols[:10]}")
    id_col, *rest = df.columns
    for groupby in groups:
        if groupby not in rest:
            raise InvalidInputError(
                f"groupby column {groupby!r} is not in {str(p)!r}; available columns (after the "
                f"sample id column {id_col!r}): {rest[:50]}{' ...' if len(rest) > 50 else ''}"
            )

    ids = df.get_column(id_col).cast(pl.String)
    if ids.null_count():
        row = int(ids.is_null().arg_true()[0])
        raise InvalidInputError(
            f"{str(p)!r}: sample id (first column {id_col!r}) is missing in data row {row + 1}"
        )
    dup = ids.filter(ids.is_duplicated()).unique(maintain_order=True).to_list()
    if dup:
        raise InvalidInputError(
            f"{str(p)!r}: sample ids in the first column {id_col!r} must be unique; "
            f"duplicated: {dup[:10]}"
        )

    gene_cols: list[str] = []
    obs_cols: list[str] = []
    for name in rest:
        dtype = df.schema[name]
        if name in groups:
            obs_cols.append(name)
        elif _is_numeric(dtype):
            gene_cols.append(name)
        elif dtype == pl.String:
            col = df.get_column(name)
            parsed = col.str.strip_chars().cast(pl.Float64, strict=False)
            bad = col.is_not_null() & parsed.is_null()
            n_num = int((~bad & col.is_not_null()).sum())
            if n_num == 0:
                obs_cols.append(name)  # text column: sample metadata
            else:
                row = int(bad.arg_true()[0])
                raise InvalidInputError(
                    f"{str(p)!r}: column {name!r} mixes numbers with text: sample "
                    f"{ids[row]!r} has value {col[row]!r}; fix the value (use an empty cell "
                    "or NA for a missing value) or, if this column is sample metadata, make "
                    "all its values text"
                )
        else:
            raise InvalidInputError(
                f"{str(p)!r}: column {name!r} has type {dtype}, which is neither numeric (a "
                "gene) nor text (sample metadata)"
            )
    if not gene_cols:
        raise InvalidInputError(
            f"{str(p)!r} has no numeric gene column (columns after the ids: {rest[:20]})"
        )

    x = df.select(pl.col(gene_cols).cast(pl.Float64)).to_numpy()
    x = np.ascontiguousarray(x, dtype=np.float64)
    index = pd.Index(ids.to_list(), dtype=object)
    obs = pd.DataFrame(index=index)
    for name in obs_cols:
        values = df.get_column(name).to_list()
        if name in groups:
            obs[name] = pd.Categorical([None if v is None else str(v) for v in values])
        else:
            obs[name] = pd.array(values, dtype=object)
    var = pd.DataFrame(index=pd.Index(gene_cols, dtype=object))
    return ad.AnnData(X=x, obs=obs, var=var)


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------
def _umask() -> int | None:
    """Return the process's umask, or None if unknown.

    Read from ``/proc/self/status`` (Linux): ``os.umask`` can only be read by setting it, which
    is not safe while other threads create files.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return None


def _new_file_mode() -> int | None:
    """Return the permissions a new file gets (``0o666`` less the umask), or None if unknown."""
    mask = _umask()
    return None if mask is None else 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the folder of ``path``; move it onto ``path`` on success.

    The temporary file is not created here but by the writer, and then given the permissions
    of any new file (``0o666`` less the umask, where the system tells it): not the private 0600
    of :func:`tempfile.mkstemp` or of writers such as safetensors, so results in a shared
    folder stay readable by the group.
    """
    dest = Path(path)
    if not dest.parent.is_dir():
        raise InvalidInputError(
            f"output folder {str(dest.parent)!r} does not exist; create it first"
        )
    # Same suffix as the destination so writers that infer the format from it behave.
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.tmp{dest.suffix}"
    try:
        yield tmp
        mode = _new_file_mode()
        if mode is not None and tmp.is_file():
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _to_polars(df: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    if isinstance(df, pl.DataFrame):
        return df
    if isinstance(df, pd.DataFrame):
        keep_index = not (
            isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
        )
        out = df.reset_index() if keep_index else df
        out.columns = [str(c) for c in out.columns]
        return pl.from_pandas(out)
    raise InvalidInputError(
        f"write_table expects a polars or pandas DataFrame, got {type(df).__name__}"
    )


def write_table(
    df: pl.DataFrame | pd.DataFrame, folder: str | os.PathLike[str], name: str
) -> tuple[Path, Path]:
    """Write a table as ``<folder>/<name>.parquet`` and ``<folder>/<name>.csv``, atomically.

    Parameters
    ----------
    df
        polars or pandas DataFrame. A pandas index other than the default ``0..n-1`` range is
        written as the first column(s); column names are converted to strings.
    folder
        Existing output folder.
    name
        File stem (no extension, no path separator).

    Returns
    -------
    tuple of pathlib.Path
        ``(parquet_path, csv_path)``.

    Raises
    ------
    InvalidInputError
        If ``df`` is not a DataFrame, ``name`` is empty or contains a path separator, or the
        folder does not exist.

    """
    _check_name(name)
    table = _to_polars(df)
    base = Path(folder)
    pq_path, csv_path = base / f"{name}.parquet", base / f"{name}.csv"
    with atomic_path(pq_path) as tmp:
        table.write_parquet(tmp)
    with atomic_path(csv_path) as tmp:
        table.write_csv(tmp)
    return pq_path, csv_path


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise InvalidInputError(f"invalid file name {name!r}: give a plain name without a path")


def _jsonable(obj: Any) -> Any:
    """Convert numpy/pandas/path objects to JSON types; non-finite floats become None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    raise InvalidInputError(
        f"cannot write an object of type {type(obj).__name__} to JSON; convert it to "
        "numbers, strings, lists or dicts first"
    )


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as strict, indented JSON, atomically.

    numpy scalars and arrays, tuples, sets, paths and objects with a ``to_dict()`` method are
    converted; NaN and infinite floats become ``null`` (strict JSON has no NaN).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    InvalidInputError
        If an object cannot be converted, or the folder does not exist.

    """
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False, sort_keys=False) + "\n"
    dest = Path(path)
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return dest


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save a matplotlib Figure atomically; the format comes from the extension of ``path``.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    InvalidInputError
        If the extension is missing or not a format matplotlib writes, or the folder does not
        exist.

    """
    dest = Path(path)
    fmt = dest.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InvalidInputError(
            f"cannot save a figure as {str(dest)!r}: extension {fmt!r} is not one of "
            f"{sorted(supported)}"
        )
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return dest


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike[str]) -> Path:
    """Write AnnData as ``.h5ad`` atomically.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    InvalidInputError
        If ``path`` does not end in ``.h5ad`` or the folder does not exist.

    """
    dest = Path(path)
    if dest.suffix.lower() != ".h5ad":
        raise InvalidInputError(f"write_h5ad needs a path ending in .h5ad, got {str(dest)!r}")
    with atomic_path(dest) as tmp:
        adata.write_h5ad(tmp)
    return dest


class ResultFolder:
    """One output folder of a job: creates it and writes results into it atomically.

    Parameters
    ----------
    path
        Folder to create (with parents) if missing.

    Examples
    --------
    >>> out = ResultFolder(tmp_path / "run")  # doctest: +SKIP
    >>> out.write_json({"accuracy": 0.9}, "summary")  # doctest: +SKIP

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InvalidInputError(f"result folder {str(self.path)!r} exists and is a file")
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the folder (the file need not exist)."""
        _check_name(name)
        return self.path / name

    def write_table(self, df: pl.DataFrame | pd.DataFrame, name: str) -> tuple[Path, Path]:
        """Write ``<name>.parquet`` and ``<name>.csv`` (see :func:`write_table`)."""
        return write_table(df, self.path, name)

    def write_json(self, obj: Any, name: str = "summary") -> Path:
        """Write ``<name>.json`` (``.json`` is added when missing; see :func:`write_json`)."""
        return write_json(obj, self.file(name if name.endswith(".json") else f"{name}.json"))

    def save_figure(self, fig: Figure, name: str, *, dpi: int = 150) -> Path:
        """Save a figure; ``.png`` is added when ``name`` has no extension."""
        return save_figure(fig, self.file(name if Path(name).suffix else f"{name}.png"), dpi=dpi)

    def write_h5ad(self, adata: ad.AnnData, name: str) -> Path:
        """Write ``<name>.h5ad`` (``.h5ad`` is added when missing; see :func:`write_h5ad`)."""
        return write_h5ad(adata, self.file(name if name.endswith(".h5ad") else f"{name}.h5ad"))


@contextlib.contextmanager
def staged_result_folder(
    path: str | os.PathLike[str], *, overwrite: bool = False
) -> Iterator[ResultFolder]:
    """Yield a job's result folder that appears at ``path`` only when the job succeeds.

    The job writes into a hidden sibling folder (``.<name>.partial-…``). When the ``with`` block
    ends without an error, that folder is renamed to ``path`` (an existing folder is moved
    aside first and removed after the rename); on any error or interruption it is removed, so
    a failed run leaves neither a partial folder nor a half-replaced earlier result.

    Parameters
    ----------
    path
        Result folder to create. Its parent folders are created if missing.
    overwrite
        Replace an existing non-empty folder at ``path`` (an empty one is always replaced).

    Yields
    ------
    ResultFolder
        The staging folder to write into.

    Raises
    ------
    InvalidInputError
        If ``path`` is a file, a non-empty folder without ``overwrite``, the current folder or
        one of its parents, or its parent folder cannot be created.

    """
    final = Path(path)
    if final.name in ("", ".", ".."):
        raise InvalidInputError(f"give the result folder a name, got {str(path)!r}")
    if final.exists() and not final.is_dir():
        raise InvalidInputError(f"result folder {str(final)!r} exists and is a file")
    if final.is_dir():
        here = Path.cwd().resolve()
        if final.resolve() == here or final.resolve() in here.parents:
            raise InvalidInputError(
                f"result folder {str(final)!r} holds the current folder; choose another"
            )
        if any(final.iterdir()) and not overwrite:
            raise InvalidInputError(
                f"result folder {str(final)!r} exists and is not empty; choose another folder "
                "or pass --overwrite (overwrite=True) to replace it"
            )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.partial-{secrets.token_hex(8)}"
        staging.mkdir()
    except OSError as error:
        raise InvalidInputError(
            f"cannot create the result folder {str(final)!r}: {error}"
        ) from error
    mask = _umask()
    if mask is not None:  # a new folder's permissions (mkdir's), not a private 0700
        os.chmod(staging, 0o777 & ~mask)
    try:
        yield ResultFolder(staging)
        if final.exists():
            aside = final.parent / f".{final.name}.replaced-{secrets.token_hex(8)}"
            os.rename(final, aside)
            os.rename(staging, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
