"""The command line: jobs write complete result folders; bad input exits 2 with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from omicsembed.cli import app

runner = CliRunner()


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    groups = np.repeat(["liver", "brain", "lung"], 8)
    values = rng.gamma(2.0, 1.0, size=(24, 15))
    values[groups == "liver", 0] += 20.0  # a liver-specific gene
    frame = pd.DataFrame(values, columns=[f"g{i}" for i in range(15)])
    frame.insert(0, "sample", [f"s{i}" for i in range(24)])
    frame.insert(1, "tissue", groups)
    path = tmp_path / "expression.csv"
    frame.to_csv(path, index=False)
    return path


def test_tissue_specificity_writes_tables_and_finds_the_planted_gene(table, tmp_path) -> None:
    out = tmp_path / "tissue"
    result = runner.invoke(
        app, ["tissue-specificity", str(table), "--groupby", "tissue", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    genes = pd.read_parquet(out / "tissue_specificity.parquet")
    assert genes.loc[genes["tau"].idxmax(), "gene"] == "g0"
    assert genes.set_index("gene").loc["g0", "top_group"] == "liver"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_groups"] == 3 and summary["n_genes"] == 15
    assert (out / "tau_histogram.png").stat().st_size > 0


def test_a_result_folder_is_replaced_only_with_overwrite(table, tmp_path) -> None:
    out = tmp_path / "tissue"
    command = ["tissue-specificity", str(table), "--groupby", "tissue", "--out", str(out)]
    assert runner.invoke(app, command).exit_code == 0
    (out / "stale.txt").write_text("from an earlier run")
    refused = runner.invoke(app, command)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert (out / "stale.txt").exists()
    assert runner.invoke(app, [*command, "--overwrite"]).exit_code == 0
    assert not (out / "stale.txt").exists() and (out / "summary.json").exists()
    # an output path under a file is an error message, not a traceback
    (tmp_path / "a_file").write_text("x")
    bad = runner.invoke(app, [*command[:-1], str(tmp_path / "a_file" / "sub")])
    assert bad.exit_code == 2 and "cannot create" in bad.output


def test_fe_fit_writes_embeddings_and_benchmark(table, tmp_path) -> None:
    out = tmp_path / "fe"
    args = ["fe", "fit", str(table), "--groupby", "tissue", "--out", str(out)]
    result = runner.invoke(
        app, [*args, "--epochs", "2", "--embedding-size", "3", "--log-transform"]
    )
    assert result.exit_code == 0, result.output
    embeddings = pd.read_parquet(out / "sample_embeddings.parquet")
    assert list(embeddings.columns) == ["sample", "tissue", "fe_1", "fe_2", "fe_3"]
    assert len(embeddings) == 24
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["metrics"]["knn_accuracy"]) == {"factorized_embedding", "pca_3"}
    # settings, seed and versions, as every job's summary
    assert summary["metrics"]["seed"] == 0 and "torch" in summary["metrics"]["versions"]
    assert summary["metrics"]["settings"]["max_epochs"] > 0
    assert (out / "model" / "model.safetensors").is_file()


def test_fe_fit_resume_refuses_a_checkpoint_of_other_data(table, tmp_path) -> None:
    checkpoints = tmp_path / "checkpoints"
    args = ["fe", "fit", str(table), "--groupby", "tissue", "--epochs", "2"]
    args += ["--embedding-size", "3", "--checkpoint-dir", str(checkpoints)]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "a")]).exit_code == 0
    frame = pd.read_csv(table)
    frame.loc[0, "g3"] += 1.0
    other = tmp_path / "other.csv"
    frame.to_csv(other, index=False)
    command = [*args, "--resume", "--out", str(tmp_path / "b")]
    command[2] = str(other)
    result = runner.invoke(app, command)
    assert result.exit_code == 2 and "run on other data" in result.output, result.output
    assert not (tmp_path / "b").exists()
    command[2] = str(table)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_running_out_of_memory_is_one_line_and_leaves_no_folder(table, tmp_path, monkeypatch, kind):
    import omicsembed.jobs

    def exhausted(*args, **kwargs):
        if kind == "numpy":
            raise MemoryError
        torch.empty(2**62, dtype=torch.uint8)  # torch's CPU allocator: a RuntimeError

    monkeypatch.setattr(omicsembed.jobs, "tissue_specificity_job", exhausted)
    out = tmp_path / "out"
    command = ["tissue-specificity", str(table), "--groupby", "tissue", "--out", str(out)]
    result = runner.invoke(app, command)
    assert result.exit_code == 1 and "out of memory" in result.output
    assert "Traceback" not in result.output and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["expression.csv"]  # no staged folder


def test_other_runtime_errors_are_not_taken_for_memory(table, tmp_path, monkeypatch) -> None:
    import omicsembed.jobs

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(omicsembed.jobs, "tissue_specificity_job", broken)
    command = [
        "tissue-specificity",
        str(table),
        "--groupby",
        "tissue",
        "--out",
        str(tmp_path / "o"),
    ]
    result = runner.invoke(app, command)
    assert isinstance(result.exception, RuntimeError) and "a bug" in str(result.exception)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tissue-specificity", "{missing}", "--groupby", "tissue"], "does not exist"),
        (["tissue-specificity", "{table}", "--groupby", "organ"], "organ"),
        (["fe", "fit", "{table}", "--groupby", "nope"], "nope"),
        (["tissue-specificity", "{text}", "--groupby", "tissue"], "g1"),
        # checked before the VAE is trained
        (["explain", "--data", "{table}", "--model", "vae", "--model", "gan"], "'gan'"),
        (["explain", "--data", "{table}", "--model", "dbm", "--gibbs-schedule", "x"], "'x'"),
        (["explain", "--data", "{table}", "--initializations", "0"], "n_initializations"),
        (["explain", "--data", "{table}", "--n-random", "-1"], "n_random"),
        (["explain", "--data", "{table}", "--repetitions", "0"], "n_repetitions"),
        (["explain", "--data", "{table}", "--monitor-every", "-5"], "monitor_every"),
        (["explain", "--data", "{table}", "--quantile", "1"], "quantile"),
        (["explain", "--data", "{table}", "--n-select", "16"], "cannot select 16 genes"),
        (["explain", "--data", "{table}", "--vae-learning-rate", "-1"], "learning_rate"),
        (["explain", "--data", "{table}", "--model", "dbm", "--dbm-epochs", "0"], "dbm_epochs"),
        # one seed range for every job, said in CLI terms
        (["fe", "fit", "{table}", "--groupby", "tissue", "--seed", "-1"], "'--seed'"),
        (["explain", "--data", "{table}", "--seed", "4294967296"], "4294967295"),
        # sizes beyond this machine's memory, refused before training (not after it)
        (["explain", "--data", "{table}", "--n-synthetic", "{huge}"], "synthetic cells"),
        (
            ["explain", "--data", "{table}", "--model", "dbm", "--n-synthetic", "{huge}"],
            "synthetic",
        ),
        (["explain", "--data", "{table}", "--labels", "tissue", "--n-random", "{huge}"], "sets"),
        (["explain", "--data", "{table}", "--model", "dbm", "--epochs", "{huge}"], "learning-rate"),
    ],
)
def test_bad_input_exits_2_with_a_message(table, tmp_path, arguments, message) -> None:
    text = tmp_path / "text.csv"
    frame = pd.read_csv(table)
    frame["g1"] = frame["g1"].astype(str)
    frame.loc[3, "g1"] = "high"
    frame.to_csv(text, index=False)
    paths = {"missing": tmp_path / "absent.csv", "table": table, "text": text, "huge": 10**13}
    filled = [argument.format(**paths) for argument in arguments]
    result = runner.invoke(app, [*filled, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    # nothing was trained or written
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    accuracy = summary["factorized_embedding"]["knn_accuracy"]["factorized_embedding"]["mean"]
    assert accuracy > 2 * summary["factorized_embedding"]["knn_chance"]
    for figure in ("sample_embedding.png", "reconstruction.png", "tau_histogram.png"):
        assert (out / figure).stat().st_size > 0


def test_explain_on_a_data_folder_uses_its_labels_and_size_factors_for_counts(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cell_type = rng.integers(0, 3, 150)
    depth = rng.uniform(0.5, 2.0, (150, 1))
    means = np.where(np.arange(12) // 4 == cell_type[:, None], 20.0, 2.0)
    counts = rng.poisson(depth * means).astype(np.float32)
    folder = tmp_path / "counts"
    folder.mkdir()
    np.savez_compressed(
        folder / "expression.npz",
        X=counts,
        cell_type=np.array(["a", "b", "c"])[cell_type],
        plate=np.full(150, "p1"),  # one value: not a label
        cell_id=np.array([f"c{i}" for i in range(150)]),  # one per cell: not a label
    )
    out = tmp_path / "explained"
    args = ["explain", "--data", str(folder), "--model", "vae", "--epochs", "2"]
    args += ["--n-select", "2", "--n-random", "3", "--n-synthetic", "300", "--repetitions", "1"]
    args += ["--monitor-every", "0", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size_factors"] is True  # integer counts
    # --monitor-every 0: no monitoring, no outputs over epochs
    assert summary["settings"]["monitor_every"] is None
    over_epochs = {path.name for path in out.glob("*_over_epochs*")}
    assert over_epochs == {"vae_energy_over_epochs.csv", "vae_energy_over_epochs.parquet"}
    assert {row["labels"] for row in summary["label_transfer"]} == {"cell_type"}
    # --no-size-factors and explicit labels override the defaults
    other = tmp_path / "raw"
    result = runner.invoke(app, [*args[:-1], str(other), "--no-size-factors", "--labels", "plate"])
    assert result.exit_code != 0
    assert "distinct label" in result.output


def test_explain_trains_both_models_and_writes_the_report(tmp_path) -> None:
    from omicsembed.simulate import stair_cell_stages

    data = stair_cell_stages(300, n_noise_genes=8, seed=0)
    data.obs["stage"] = data.obs["stage"].astype(str).astype("category")
    path = tmp_path / "stairs.h5ad"
    data.write_h5ad(path)
    out = tmp_path / "explain"
    args = ["explain", "--data", str(path), "--model", "vae", "--model", "dbm"]
    options = ["--epochs", "4", "--n-select", "3", "--labels", "stage", "--n-random", "5"]
    extra = ["--n-synthetic", "500", "--initializations", "2", "--monitor-every", "3"]
    extra += ["--repetitions", "2"]
    extra += ["--gibbs-schedule", "synchronous"]
    result = runner.invoke(app, [*args, *options, *extra, "--energy-every", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["selected_genes"]) == {"vae", "dbm"}
    assert "numpy" in summary["versions"]
    from omicsembed.models import BernoulliVAE, DeepBoltzmannMachine

    dbm = DeepBoltzmannMachine.load(out / "model" / "dbm")
    genes = list(data.var_names)
    assert BernoulliVAE.load(out / "model" / "vae").feature_names_ == dbm.feature_names_ == genes
    assert summary["settings"]["gibbs_schedule"] == "synchronous"
    # 2 repetitions × 2 initialisations × 2 models, seeds 0, 1 then 2, 3
    initializations = pd.read_parquet(out / "initializations.parquet")
    assert len(initializations) == len(summary["initializations"]) == 8
    dbm_rows = initializations[initializations["model"] == "dbm"]
    assert dbm_rows[["repetition", "seed"]].values.tolist() == [[0, 0], [0, 1], [1, 2], [1, 3]]
    # the DBM's 4 epochs are scored at epoch 3 only; each row is the best of its curve
    curves = pd.read_parquet(out / "dbm_energy_over_epochs.parquet")
    assert curves["epoch"].tolist() == [3] * 4 and curves["seed"].tolist() == [0, 1, 2, 3]
    for row in summary["initializations"]:
        curve = pd.read_parquet(out / f"{row['model']}_energy_over_epochs.parquet")
        curve = curve[curve["seed"] == row["seed"]]
        assert row["energy_statistic"] == curve["energy_statistic"].min()
        assert row["best_epoch"] in set(curve["epoch"])
    # fewer epochs than --energy-every: the trained model itself is scored, once
    short = tmp_path / "short"
    quick = ["--n-synthetic", "300", "--repetitions", "1", "--out", str(short)]
    result = runner.invoke(app, [*args[:5], *options, *quick])
    assert result.exit_code == 0, result.output
    curve = pd.read_parquet(short / "vae_energy_over_epochs.parquet")
    assert len(curve) == 1 and 1 <= curve["epoch"][0] <= 4
    for name in ("vae_selection", "dbm_pattern_map", "label_transfer", "gene_overlap"):
        assert (out / f"{name}.parquet").is_file(), name
    assert (out / "vae_selection_over_epochs.png").is_file()
    # monitored at epoch 3, and the trained model after epoch 4 too
    over_epochs = pd.read_parquet(out / "dbm_selection_over_epochs.parquet")
    assert sorted(set(over_epochs["epoch"])) == [3, 4]
    assert (out / "vae_pattern_maps_over_epochs.png").is_file()
    patterns = pd.read_parquet(out / "dbm_patterns_over_epochs.parquet")
    assert sorted(set(patterns["epoch"])) == [3, 4]
    assert (patterns.groupby("epoch")["count"].sum() <= 500).all()  # of the 500 drawn cells
    # monitoring is on by default (every 10 epochs): a model of 4 epochs, at its last
    assert set(pd.read_parquet(short / "vae_selection_over_epochs.parquet")["epoch"]) == {
        curve["epoch"][0]
    }
    transfer = pd.read_parquet(out / "label_transfer.parquet")
    assert (out / "label_transfer.png").stat().st_size > 0
    assert set(transfer["method"]) == {"vae", "dbm", "nmf"}
    assert sorted(set(transfer["repetition"])) == [0, 1]
    # the ranks of each repetition, and their median over the repetitions
    over = pd.read_parquet(out / "label_transfer_over_repetitions.parquet")
    assert len(over) == 3 and (over["repetitions"] == 2).all()
    for row in over.itertuples():
        ranks = transfer[(transfer["method"] == row.method)]["rank"]
        assert row.median_rank == ranks.median() and row.best_rank == ranks.min()
    selection = pd.read_parquet(out / "vae_selection.parquet")
    assert selection.groupby("repetition")["step"].count().tolist() == [3, 3]


def test_explained_epoch_is_the_one_whose_parameters_the_model_holds() -> None:
    # the VAE's training restores its best epoch (first lowest validation loss, else training
    # loss); a DBM keeps its last: the final explanation is labelled with that epoch
    from types import SimpleNamespace

    from omicsembed.jobs import _epoch_of_weights

    history = pd.DataFrame(
        {"epoch": [1, 2, 3, 4], "train_loss": [4.0, 3.0, 2.0, 1.0], "validation_loss": [3, 1, 1, 2]}
    )
    assert _epoch_of_weights(SimpleNamespace(history_=history, epochs=4)) == 2
    no_split = history.assign(validation_loss=np.nan)
    assert _epoch_of_weights(SimpleNamespace(history_=no_split, epochs=4)) == 4
    assert _epoch_of_weights(SimpleNamespace(history_=[], epochs=10)) == 10


def test_explain_job_refuses_repeated_gene_names_before_training(tmp_path) -> None:
    import anndata as ad

    from omicsembed.exceptions import InvalidInputError
    from omicsembed.io import ResultFolder
    from omicsembed.jobs import ExplainSettings, explain_job

    rng = np.random.default_rng(0)
    cells = ad.AnnData(rng.random((30, 4)))
    cells.var_names = ["a", "b", "a", "c"]
    settings = ExplainSettings(n_select=np.array([2]), epochs=1)  # an array of sizes is fine
    with pytest.raises(InvalidInputError, match=r"gene names repeat, e.g. \['a'\]"):
        explain_job(cells, ResultFolder(tmp_path / "out"), settings=settings)
    assert not any((tmp_path / "out").iterdir())


def test_explain_settings_refuse_repeats_unknown_schedules_and_one_synthetic_cell() -> None:
    """Repeated models or sizes trained and counted twice (duplicate rows, twice the
    repetitions in the summary); a schedule was recorded unchecked when no DBM was trained;
    one synthetic cell passed the settings and failed after training."""
    from omicsembed.exceptions import InvalidInputError
    from omicsembed.jobs import ExplainSettings

    for options, message in (
        ({"models": ("vae", "vae")}, "model vae is given more than once"),
        ({"n_select": (5, 2, 5)}, "n_select 5 is given more than once"),
        ({"gibbs_schedule": "foo"}, "gibbs_schedule must be"),
        ({"n_synthetic": 1}, "n_synthetic must be an integer >= 2"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            ExplainSettings(**options)  # type: ignore[arg-type]


def test_tissue_specificity_checks_the_log_base_and_records_settings(table, tmp_path) -> None:
    for base, message in (("0", "unlog_base must be"), ("1", "unlog_base must be")):
        result = runner.invoke(
            app,
            ["tissue-specificity", str(table), "--groupby", "tissue", "--unlog-base", base,
             "--out", str(tmp_path / "bad")],
        )  # fmt: skip
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "bad").exists()
    huge = runner.invoke(
        app,
        ["tissue-specificity", str(table), "--groupby", "tissue", "--unlog-base", "1e300",
         "--out", str(tmp_path / "bad")],
    )  # fmt: skip
    assert huge.exit_code == 2 and "exceeds float64" in huge.output
    out = tmp_path / "ok"
    result = runner.invoke(
        app,
        ["tissue-specificity", str(table), "--groupby", "tissue", "--unlog-base", "2",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["unlog_base"] == 2.0 and "omicsembed" in summary["versions"]


def test_explain_job_checks_the_training_cells_labels_before_training(tmp_path) -> None:
    """Missing labels, or a second label present only among the test cells, failed only
    after the models were trained (and named row positions, not cells)."""
    import anndata as ad

    from omicsembed.exceptions import InvalidInputError
    from omicsembed.io import ResultFolder
    from omicsembed.jobs import ExplainSettings, explain_job

    rng = np.random.default_rng(0)
    cells = ad.AnnData(rng.random((40, 6)))
    cells.obs_names = [f"cell{i}" for i in range(40)]
    settings = ExplainSettings(n_select=(2,), epochs=1, seed=0)
    order = np.random.default_rng(0).permutation(40)  # the job's split: test cells first
    n_test = round(settings.test_fraction * 40)
    test_cells, train_cells = order[:n_test], np.sort(order[n_test:])
    missing = np.array(["a", "b"] * 20, dtype=object)
    missing[train_cells[3]] = None
    one_class = np.full(40, "a", dtype=object)
    one_class[test_cells[0]] = "b"  # "b" only among the test cells
    for values, message in (
        (missing, rf"no label for training cells \['cell{train_cells[3]}'\]"),
        (one_class, "fewer than two distinct labels among the"),
    ):
        cells.obs["kind"] = values
        with pytest.raises(InvalidInputError, match=message):
            explain_job(
                cells, ResultFolder(tmp_path / "out"), label_columns=("kind",), settings=settings
            )
        assert not any((tmp_path / "out").iterdir())


def test_explain_job_refuses_data_without_varying_genes(tmp_path) -> None:
    """All-zero data were explained: 'selected genes' with G² from the 0.5 fill alone."""
    import anndata as ad

    from omicsembed.exceptions import InvalidInputError
    from omicsembed.io import ResultFolder
    from omicsembed.jobs import ExplainSettings, explain_job

    cells = ad.AnnData(np.zeros((30, 5)))
    cells.X[:, 0] = np.arange(30) % 2  # one gene varies, three are to be selected
    settings = ExplainSettings(n_select=(3,), epochs=1)
    with pytest.raises(InvalidInputError, match="only 1 of 5 genes vary"):
        explain_job(cells, ResultFolder(tmp_path / "out"), settings=settings)
    assert not any((tmp_path / "out").iterdir())


def test_explain_settings_give_each_model_its_epochs_and_learning_rate() -> None:
    from omicsembed.exceptions import InvalidInputError
    from omicsembed.jobs import ExplainSettings, _generative_model

    # a setting of a model that is not trained is refused, not ignored
    with pytest.raises(InvalidInputError, match="dbm_epochs is given but no 'dbm' model"):
        ExplainSettings(models=("vae",), dbm_epochs=100)
    with pytest.raises(InvalidInputError, match="vae_learning_rate is given but no 'vae'"):
        ExplainSettings(models=("dbm",), vae_learning_rate=1e-3)

    settings = ExplainSettings(
        models=("vae", "dbm"), epochs=7, dbm_epochs=100, vae_learning_rate=1e-3
    )
    vae = _generative_model("vae", settings, 0, False)
    dbm = _generative_model("dbm", settings, 0, False)
    assert vae.settings.max_epochs == 7 and vae.settings.learning_rate == 1e-3
    assert dbm.epochs == 100
    # defaults: the paper's learning rate, each model's own epochs
    default = ExplainSettings(models=("vae", "dbm"))
    assert _generative_model("vae", default, 0, False).settings.learning_rate == 1e-4
    assert _generative_model("dbm", default, 0, False).epochs == 10
    assert _generative_model("dbm", ExplainSettings(epochs=7), 0, False).epochs == 7
