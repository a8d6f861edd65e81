"""The ``omicsembed`` command: one subcommand per user job.

- ``omicsembed demo`` — the main job on the embedded NCI60 data.
- ``omicsembed fe fit FILE --groupby COL`` — factorized embeddings of your own data.
- ``omicsembed ldvae fit FILE`` (or ``--demo``) — LDVAE factors and gene loadings of counts.
- ``omicsembed tissue-specificity FILE --groupby COL`` — Tau and tissue Wasserstein per gene.

Errors in the input (unreadable files, missing columns, non-numeric values ...) are reported in
one line and exit with status 2, running out of memory in one line with status 1; nothing
half-written is left in the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from omicsembed.exceptions import OmicsEmbedError

__all__ = ["app"]

app = typer.Typer(
    help="Embeddings of omics data and explanations of generative models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
fe_app = typer.Typer(help="Factorized embeddings (Trofimov et al. 2020).", no_args_is_help=True)
app.add_typer(fe_app, name="fe")
ldvae_app = typer.Typer(
    help="Interpretable factor models of counts: LDVAE (Svensson et al. 2020).",
    no_args_is_help=True,
)
app.add_typer(ldvae_app, name="ldvae")

_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out (numpy, torch on CPU or CUDA)."""
    if isinstance(error, MemoryError):
        return True
    message = str(error).lower()
    return "out of memory" in message or "can't allocate memory" in message


def _reports_errors(command: F) -> F:
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OmicsEmbedError as error:
            # the message is plain text (it may hold brackets); never wrap it
            _console.print("[bold red]error:[/]", Text(str(error)), soft_wrap=True)
            raise typer.Exit(code=2) from error
        except (MemoryError, RuntimeError) as error:
            # sizes known up front are refused before any work; this is what remains (numpy's
            # MemoryError, torch's allocator RuntimeError or CUDA OutOfMemoryError)
            if not _out_of_memory(error):
                raise
            _console.print(
                "[bold red]error:[/] out of memory; use fewer cells, genes, synthetic cells or "
                "gene sets, or a machine with more memory",
                soft_wrap=True,
            )
            raise typer.Exit(code=1) from error

    return run  # type: ignore[return-value]


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    Console().print_json(json.dumps(summary, default=str))
    _console.print(f"[green]results written to[/] {out}")


Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output folder; it appears only when the job succeeds (nothing is left on failure).",
    ),
]
Overwrite = Annotated[
    bool, typer.Option(help="Replace the output folder if it exists and is not empty.")
]
# one range for every job: scikit-learn's (the narrowest of the libraries a seed reaches)
Seed = Annotated[
    int,
    typer.Option(
        min=0, max=2**32 - 1, help="Seed of initialisation, shuffling and splits (0 to 2**32 − 1)."
    ),
]


@app.command()
@_reports_errors
def demo(
    out: Out = Path("omicsembed-demo"),
    quick: Annotated[
        bool, typer.Option(help="Fewer genes, epochs and splits: under a minute on 2 cores.")
    ] = False,
    seed: Seed = 0,
    epochs: Annotated[int | None, typer.Option(help="Override the number of epochs.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Run the main job on the embedded NCI60 data (64 cell lines, 9 cancer types)."""
    from omicsembed import io
    from omicsembed.jobs import DemoSettings
    from omicsembed.jobs import demo as run_demo

    with io.staged_result_folder(out, overwrite=overwrite) as folder:
        summary = run_demo(folder, DemoSettings(quick=quick, seed=seed, max_epochs=epochs))
    _print_summary(summary, out)


Data = Annotated[Path, typer.Argument(help="Samples × genes: .h5ad, .csv/.tsv or .parquet.")]
GroupBy = Annotated[str, typer.Option(help="Sample annotation column with the groups.")]
Layer = Annotated[str | None, typer.Option(help="AnnData layer to use instead of .X.")]


@fe_app.command("fit")
@_reports_errors
def fe_fit(
    data: Data,
    groupby: Annotated[
        str | None, typer.Option(help="Label column for the kNN benchmark (optional).")
    ] = None,
    out: Out = Path("omicsembed-fe"),
    layer: Layer = None,
    embedding_size: Annotated[int, typer.Option(help="Sample and gene embedding size.")] = 50,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Entries per minibatch.")] = 10_000,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    validation_fraction: Annotated[
        float, typer.Option(help="Fraction of entries held out for early stopping.")
    ] = 0.1,
    log_transform: Annotated[
        bool, typer.Option(help="Apply log10(x + 1) first (for TPM or counts).")
    ] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Write checkpoints here (resume with --resume).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Resume from --checkpoint-dir.")] = False,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fit factorized embeddings to your data and benchmark them against PCA."""
    from omicsembed import io, pp
    from omicsembed.jobs import factorized_embedding_job
    from omicsembed.models import FactorizedEmbedding

    adata = io.read_anndata(data, groupby=groupby)
    if log_transform:
        pp.log_transform(adata, layer=layer)
    model = FactorizedEmbedding(
        sample_embedding_size=embedding_size,
        gene_embedding_size=embedding_size,
        max_epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        validation_fraction=validation_fraction,
        seed=seed,
    )
    with io.staged_result_folder(out, overwrite=overwrite) as folder:
        metrics = factorized_embedding_job(
            adata,
            folder,
            groupby=groupby,
            layer=layer,
            model=model,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
        )
        summary = {"job": "fe fit", "data": str(data), "groupby": groupby, "metrics": metrics}
        folder.write_json(summary, "summary")
    _print_summary(summary, out)


@app.command("tissue-specificity")
@_reports_errors
def tissue_specificity(
    data: Data,
    groupby: GroupBy,
    out: Out = Path("omicsembed-tissue"),
    layer: Layer = None,
    unlog_base: Annotated[
        float | None,
        typer.Option(help="Values are logs in this base: Tau is computed on base**x."),
    ] = None,
    percentile: Annotated[
        float, typer.Option(help="Within-group Wasserstein percentile for specific genes.")
    ] = 65.0,
    overwrite: Overwrite = False,
) -> None:
    """Tau index and tissue-specific Wasserstein distance of every gene."""
    from omicsembed import io
    from omicsembed.jobs import tissue_specificity_job

    adata = io.read_anndata(data, groupby=groupby)
    with io.staged_result_folder(out, overwrite=overwrite) as folder:
        metrics = tissue_specificity_job(
            adata,
            folder,
            groupby=groupby,
            layer=layer,
            unlog_base=unlog_base,
            percentile=percentile,
        )
        summary = {"job": "tissue-specificity", "data": str(data), "groupby": groupby, **metrics}
        folder.write_json(summary, "summary")
    _print_summary(summary, out)


@app.command("explain")
@_reports_errors
def explain_command(
    data: Annotated[
        Path | None,
        typer.Option(help="Cells × genes: a shared/data folder, .h5ad, .csv/.tsv or .parquet."),
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Use the embedded pbmc68k_reduced counts (10x PBMCs).")
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Generative model 'dbm' or 'vae' (repeatable; default vae)."),
    ] = None,
    n_select: Annotated[
        list[int] | None, typer.Option(help="Genes to select (repeatable; default 8 and 12).")
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option(
            help="Label columns for the label transfer (repeatable; default: bulk_labels with "
            "--demo, every label column of a shared-data folder, none for a file)."
        ),
    ] = None,
    quantile: Annotated[float, typer.Option(help="Dichotomisation quantile per gene.")] = 0.5,
    size_factors: Annotated[
        bool | None,
        typer.Option(
            "--size-factors/--no-size-factors",
            help="Divide each cell by its DESeq2 'poscounts' size factor (median of ratios "
            "for sparse counts) before the dichotomisation (default: on for integer counts, "
            "off for normalised or binary data).",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs of both models (model defaults).")
    ] = None,
    dbm_epochs: Annotated[
        int | None, typer.Option(help="The DBM's epochs, overriding --epochs.")
    ] = None,
    vae_learning_rate: Annotated[
        float | None,
        typer.Option(help="Adam learning rate of the VAE (default 1e-4, the paper's)."),
    ] = None,
    n_synthetic: Annotated[int, typer.Option(help="Synthetic cells to draw.")] = 10_000,
    n_random: Annotated[int, typer.Option(help="Random gene sets for the ranking.")] = 100,
    initializations: Annotated[
        int, typer.Option(help="Models per kind; the best by energy statistic is explained.")
    ] = 1,
    repetitions: Annotated[
        int,
        typer.Option(
            help="Repeat training, selection and label transfer with new model seeds; the "
            "label-transfer ranks are also reported as medians over the repetitions."
        ),
    ] = 3,
    energy_every: Annotated[
        int,
        typer.Option(
            help="Score the energy statistic against held-out cells every N epochs; the best "
            "epoch of the best initialisation is explained."
        ),
    ] = 10,
    monitor_every: Annotated[
        int,
        typer.Option(
            help="Explain every N epochs during training: selection, top patterns and pattern "
            "maps over epochs (0: none)."
        ),
    ] = 10,
    gibbs_schedule: Annotated[
        str,
        typer.Option(
            help="DBM fine-tuning particles: 'blocked' Gibbs sweeps (exact) or 'synchronous' "
            "(all layers at once, exactly BoltzmannMachines.jl as used by the authors)."
        ),
    ] = "blocked",
    out: Out = Path("omicsembed-explain"),
    layer: Layer = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Explain a DBM or Bernoulli VAE with log-linear models (Hess et al. 2020)."""
    from omicsembed import io
    from omicsembed.datasets import pbmc68k_reduced, read_shared_folder
    from omicsembed.exceptions import InvalidInputError
    from omicsembed.jobs import ExplainSettings, explain_job

    if demo == (data is not None):
        raise InvalidInputError("give either --data or --demo")
    if demo:
        adata = pbmc68k_reduced()
        label_columns = tuple(labels or ["bulk_labels"])
    else:
        assert data is not None
        folder_data = data.is_dir()
        # a table's label columns stay annotations even when their values are numbers
        adata = read_shared_folder(data) if folder_data else io.read_anndata(data, groupby=labels)
        # a shared-data folder's .obs holds its per-cell annotations (e.g. cell_type, class):
        # those that group cells (2 to n/2 values) are its labels
        default_labels = (
            [c for c in adata.obs.columns if 2 <= adata.obs[c].nunique() <= adata.n_obs // 2]
            if folder_data
            else []
        )
        label_columns = tuple(labels if labels is not None else default_labels)
    settings = ExplainSettings(
        models=tuple(model or ["vae"]),
        n_select=tuple(n_select or (8, 12)),
        quantile=quantile,
        size_factors=size_factors,
        n_synthetic=n_synthetic,
        n_random=n_random,
        epochs=epochs,
        dbm_epochs=dbm_epochs,
        vae_learning_rate=vae_learning_rate,
        n_initializations=initializations,
        n_repetitions=repetitions,
        energy_every=energy_every,
        monitor_every=monitor_every or None,  # 0: no monitoring
        gibbs_schedule=gibbs_schedule,  # type: ignore[arg-type]  # checked by the model
        seed=seed,
    )
    with io.staged_result_folder(out, overwrite=overwrite) as folder:
        summary = {
            "job": "explain",
            "data": "pbmc68k_reduced" if demo else str(data),
            **explain_job(
                adata, folder, label_columns=label_columns, layer=layer, settings=settings
            ),
        }
        folder.write_json(summary, "summary")
    _print_summary(summary, out)


@ldvae_app.command("fit")
@_reports_errors
def ldvae_fit(
    data: Annotated[
        Path | None,
        typer.Argument(help="Cells × genes raw counts: .h5ad, .csv/.tsv or .parquet."),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(help="Use the embedded pbmc68k_reduced counts (groupby bulk_labels)."),
    ] = False,
    n_latent: Annotated[int, typer.Option(help="Number of latent factors.")] = 10,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default as scvi-tools).")
    ] = None,
    latent_distribution: Annotated[
        str, typer.Option(help="'normal' or 'ln' (logistic normal).")
    ] = "normal",
    groupby: Annotated[
        str | None, typer.Option(help="Cell label column for the plots (optional).")
    ] = None,
    batch_key: Annotated[
        str | None,
        typer.Option(help="Cell annotation column of technical batches (text labels; optional)."),
    ] = None,
    layer: Layer = None,
    out: Out = Path("omicsembed-ldvae"),
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Fit an LDVAE to counts: factors, gene loadings, variance explained, held-out error."""
    from omicsembed import io
    from omicsembed.datasets import pbmc68k_reduced
    from omicsembed.exceptions import InvalidInputError
    from omicsembed.jobs import ldvae_job
    from omicsembed.models import LDVAE

    if demo == (data is not None):
        raise InvalidInputError("give either a DATA file or --demo (not both)")
    if demo:
        adata = pbmc68k_reduced()
        groupby = groupby or "bulk_labels"
    else:
        assert data is not None
        adata = io.read_anndata(data, groupby=groupby)
    model = LDVAE(
        n_latent=n_latent,
        max_epochs=epochs,
        latent_distribution=latent_distribution,  # type: ignore[arg-type]
        seed=seed,
    )
    with io.staged_result_folder(out, overwrite=overwrite) as folder:
        metrics = ldvae_job(
            adata, folder, groupby=groupby, layer=layer, batch_key=batch_key, model=model, seed=seed
        )
        summary = {
            "job": "ldvae fit",
            "data": "pbmc68k_reduced" if demo else str(data),
            "groupby": groupby,
            "metrics": metrics,
        }
        folder.write_json(summary, "summary")
    _print_summary(summary, out)
