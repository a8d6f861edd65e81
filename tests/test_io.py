"""Reading tables/AnnData and atomic writing of results."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.figure import Figure

from omicsembed.exceptions import InvalidInputError
from omicsembed.io import (
    ResultFolder,
    read_anndata,
    save_figure,
    staged_result_folder,
    write_h5ad,
    write_json,
    write_table,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    df = pd.DataFrame(x, columns=["TP53", "MYC", "EGFR", "GAPDH"])
    df.insert(0, "sample", [f"s{i}" for i in range(5)])
    df["tissue"] = ["liver", "lung", "lung", "brain", "liver"]
    df["batch"] = [1, 2, 1, 2, 1]
    return df


def _listdir(path: Path) -> set[str]:
    return set(os.listdir(path))


# ----------------------------------------------------------------------------- reading
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".parquet"])
def test_table_round_trip(tmp_path, frame, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        pl.from_pandas(frame).write_parquet(path)
    else:
        sep = "\t" if suffix.startswith(".tsv") else ","
        text = frame.to_csv(sep=sep, index=False)
        if suffix.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    a = read_anndata(path, groupby="batch")
    # numeric columns are genes, except the groupby column; text columns go to .obs
    assert list(a.var_names) == ["TP53", "MYC", "EGFR", "GAPDH"]
    assert list(a.obs_names) == list(frame["sample"])
    np.testing.assert_allclose(a.X, frame[["TP53", "MYC", "EGFR", "GAPDH"]].to_numpy(), rtol=1e-15)
    assert a.X.dtype == np.float64
    assert list(a.obs["tissue"]) == list(frame["tissue"])
    assert isinstance(a.obs["batch"].dtype, pd.CategoricalDtype)
    assert list(a.obs["batch"].astype(str)) == ["1", "2", "1", "2", "1"]


def test_several_numeric_label_columns_stay_annotations(tmp_path, frame):
    """The explain job's label columns (--labels a --labels b) of a table: numeric ones were
    read as genes (and could be selected) and then reported missing."""
    path = tmp_path / "d.csv"
    frame.assign(cluster=np.arange(len(frame)) % 3).to_csv(path, index=False)
    a = read_anndata(path, groupby=["batch", "cluster"])
    assert "batch" not in a.var_names and "cluster" not in a.var_names
    assert list(a.obs["cluster"].astype(str)) == ["0", "1", "2", "0", "1"]
    with pytest.raises(InvalidInputError, match="'missing' is not in"):
        read_anndata(path, groupby=("cluster", "missing"))


def test_numeric_column_is_a_gene_without_groupby(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    a = read_anndata(path)
    assert "batch" in a.var_names and "tissue" in a.obs.columns


def test_missing_values_become_nan(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,g1,g2\na,1,NA\nb,,2\nc,NaN,3\n")
    a = read_anndata(path)
    expected = np.array([[1, np.nan], [np.nan, 2], [np.nan, 3]])
    np.testing.assert_array_equal(a.X, expected)


def test_h5ad_round_trip(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    obs = pd.DataFrame({"tissue": pd.Categorical(["a", "b", "a"])}, index=["x", "y", "z"])
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(4)]))
    path = write_h5ad(a, tmp_path / "a.h5ad")
    b = read_anndata(path, groupby="tissue")
    np.testing.assert_array_equal(b.X, x)
    assert list(b.obs["tissue"]) == ["a", "b", "a"]
    assert list(b.var_names) == list(a.var_names)
    assert _listdir(tmp_path) == {"a.h5ad"}
    with pytest.raises(InvalidInputError, match=r"'nope'.*available .obs columns: \['tissue'\]"):
        read_anndata(path, groupby="nope")


def test_error_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_anndata(tmp_path / "absent.csv")


def test_error_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(InvalidInputError, match=r"unknown file extension '.xlsx'"):
        read_anndata(path)


@pytest.mark.parametrize("name", ["bad.parquet", "bad.h5ad"])
def test_error_unreadable_content(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 not a real file")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_anndata(path)


def test_error_missing_groupby_lists_columns(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"'cancer'.*'TP53'.*'tissue'"):
        read_anndata(path, groupby="cancer")


def test_error_mixed_numeric_column_names_column_sample_and_value(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,g1,g2\na,1,2\nb,3,oops\nc,5,6\n")
    with pytest.raises(InvalidInputError, match=r"column 'g2'.*sample 'b'.*'oops'"):
        read_anndata(path)


def test_error_duplicated_sample_ids(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,g1\na,1\na,2\n")
    with pytest.raises(InvalidInputError, match=r"unique.*\['a'\]"):
        read_anndata(path)


def test_error_duplicated_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,g1,g1\na,1,2\n")
    with pytest.raises(InvalidInputError, match="duplicated column"):
        read_anndata(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id\na\nb\n", "1 column"),
        ("id,g1\n", "no sample rows"),
        ("id,tissue\na,liver\n", "no numeric gene column"),
        (",g1\n,1\n", "sample id"),
    ],
)
def test_error_degenerate_tables(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        read_anndata(path)


# ----------------------------------------------------------------------------- writing
def test_write_table_pandas_and_polars(tmp_path):
    pdf = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}, index=pd.Index(["r1", "r2"], name="id"))
    pq, csv = write_table(pdf, tmp_path, "t1")
    back = pl.read_parquet(pq)
    assert back.columns == ["id", "a", "b"]  # a non-default index is kept as a column
    assert back["a"].to_list() == [1.5, 2.5]
    assert pl.read_csv(csv).equals(back)

    pldf = pl.DataFrame({"k": [1, 2, 3]})
    write_table(pldf, tmp_path, "t2")
    assert pl.read_parquet(tmp_path / "t2.parquet").equals(pldf)
    assert pl.read_csv(tmp_path / "t2.csv").equals(pldf)
    write_table(pd.DataFrame({"k": [1]}), tmp_path, "t3")
    assert pl.read_parquet(tmp_path / "t3.parquet").columns == ["k"]  # default index dropped
    assert _listdir(tmp_path) == {f"t{i}.{e}" for i in (1, 2, 3) for e in ("parquet", "csv")}


def test_write_table_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="DataFrame"):
        write_table({"a": [1]}, tmp_path, "t")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="plain name"):
        write_table(pl.DataFrame({"a": [1]}), tmp_path, "sub/t")
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_table(pl.DataFrame({"a": [1]}), tmp_path / "absent", "t")


def test_write_json_converts_numpy_and_nan(tmp_path):
    obj = {
        "a": np.float32(0.5),
        "b": np.arange(3),
        "c": float("nan"),
        "d": (1, np.inf),
        "p": tmp_path,
        "n": {1: np.bool_(True)},
    }
    path = write_json(obj, tmp_path / "s.json")
    back = json.loads(path.read_text())
    assert back == {
        "a": 0.5,
        "b": [0, 1, 2],
        "c": None,
        "d": [1, None],
        "p": str(tmp_path),
        "n": {"1": True},
    }
    with pytest.raises(InvalidInputError, match="object"):
        write_json({"x": object()}, tmp_path / "bad.json")
    assert _listdir(tmp_path) == {"s.json"}


def test_save_figure(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_figure(fig, tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(InvalidInputError, match="extension"):
        save_figure(fig, tmp_path / "f.nope")
    assert _listdir(tmp_path) == {"f.png", "f.pdf"}


def test_write_h5ad_needs_suffix(tmp_path):
    with pytest.raises(InvalidInputError, match=r"\.h5ad"):
        write_h5ad(ad.AnnData(np.zeros((2, 2))), tmp_path / "a.hdf5")


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    df = pl.DataFrame({"a": [1]})
    write_table(df, tmp_path, "t")
    before = (tmp_path / "t.csv").read_bytes()

    def boom(self, file, *args, **kwargs):
        Path(file).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        write_table(pl.DataFrame({"a": [2]}), tmp_path, "t")
    assert (tmp_path / "t.csv").read_bytes() == before
    assert _listdir(tmp_path) == {"t.csv", "t.parquet"}


def test_written_files_get_the_permissions_of_new_files(tmp_path):
    # not mkstemp's private 0600: colleagues sharing the result folder can read it
    from safetensors.numpy import save_file

    from omicsembed.io import atomic_path

    previous = os.umask(0o022)
    try:
        write_table(pl.DataFrame({"a": [1]}), tmp_path, "t")
        # safetensors creates its file private (0600) itself
        with atomic_path(tmp_path / "w.safetensors") as temporary:
            save_file({"w": np.zeros(2)}, str(temporary))
    finally:
        os.umask(previous)
    for name in ("t.csv", "t.parquet", "w.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_result_folder(tmp_path):
    out = ResultFolder(tmp_path / "a" / "b")
    assert out.path.is_dir()
    out.write_json({"x": 1})
    out.write_table(pl.DataFrame({"a": [1]}), "tab")
    fig = Figure()
    fig.add_subplot()
    out.save_figure(fig, "fig")
    out.write_h5ad(ad.AnnData(np.ones((2, 3), dtype=np.float32)), "data")
    assert _listdir(out.path) == {"summary.json", "tab.parquet", "tab.csv", "fig.png", "data.h5ad"}
    assert ResultFolder(out.path).path == out.path  # existing folder is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        ResultFolder(tmp_path / "file")


def test_staged_result_folder_appears_only_when_the_job_succeeds(tmp_path):
    out = tmp_path / "nested" / "run"
    with staged_result_folder(out) as folder:
        folder.write_json({"a": 1}, "summary")
        assert not out.exists()  # written aside until the job ends
    assert json.loads((out / "summary.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # nothing hidden left
    # a failing or interrupted job leaves nothing, and an earlier result stays whole
    for error in (InvalidInputError("bad"), KeyboardInterrupt()):
        with pytest.raises(type(error)), staged_result_folder(out, overwrite=True) as folder:
            folder.write_json({"a": 2}, "summary")
            folder.write_json({}, "other")
            raise error
        assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
        assert json.loads((out / "summary.json").read_text()) == {"a": 1}
        assert sorted(p.name for p in out.parent.iterdir()) == ["run"]
    fresh = tmp_path / "fresh"
    with pytest.raises(InvalidInputError), staged_result_folder(fresh) as folder:
        raise InvalidInputError("bad")
    assert not fresh.exists()


def test_staged_result_folder_replaces_only_when_asked(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    with staged_result_folder(out) as folder:  # an empty folder is replaced
        folder.write_json({"a": 1}, "summary")
        folder.write_json({}, "stale")
    with (
        pytest.raises(InvalidInputError, match=r"not empty.*--overwrite"),
        staged_result_folder(out),
    ):
        pass
    with staged_result_folder(out, overwrite=True) as folder:
        folder.write_json({"a": 2}, "summary")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # the stale file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(out)
    for bad, message in (
        (tmp_path / "a_file", "is a file"),
        (tmp_path / "a_file" / "sub", "cannot create"),
        ("", "a name"),
        (".", "a name"),
        (tmp_path, "holds the current folder"),
    ):
        with (
            pytest.raises(InvalidInputError, match=message),
            staged_result_folder(bad, overwrite=True),
        ):
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_repeated_sample_names_of_an_h5ad_are_refused(tmp_path):
    """A table's repeated sample ids are refused, and so are an .h5ad's (anndata refuses them
    while reading; the fuzz of session 25 reported them accepted, which this pins)."""
    import warnings

    adata = ad.AnnData(np.ones((3, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.obs_names = ["c0", "c1", "c0"]
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(InvalidInputError, match="not unique"):
        read_anndata(path)


def test_anndata_matrix_reads_x_or_a_layer_and_refuses_what_it_cannot() -> None:
    import anndata as ad

    from omicsembed.io import anndata_matrix

    counts = np.arange(6.0).reshape(2, 3)
    data = ad.AnnData(np.zeros((2, 3)), layers={"counts": counts})
    np.testing.assert_array_equal(anndata_matrix(data, "counts"), counts)
    np.testing.assert_array_equal(anndata_matrix(data, None), np.zeros((2, 3)))
    assert anndata_matrix(counts, None) is counts
    with pytest.raises(InvalidInputError, match=r"'raw' not found; available layers: \['counts'\]"):
        anndata_matrix(data, "raw")
    with pytest.raises(InvalidInputError, match="only applies to AnnData"):
        anndata_matrix(counts, "counts")
    with pytest.raises(InvalidInputError, match=r"no \.X"):
        anndata_matrix(ad.AnnData(obs=data.obs, var=data.var), None)
