"""One rule for seeds at every entry point (``omicsembed._seeds``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import omicsembed
from omicsembed._seeds import RUST_SEEDS, SKLEARN_SEEDS, TORCH_SEEDS, numpy_rng, seed_int
from omicsembed.evaluate import knn_classification
from omicsembed.exceptions import InvalidInputError
from omicsembed.explain.loglinear import select_features_loglinear
from omicsembed.train import NarrowFormatSampler


@pytest.mark.parametrize("below", [SKLEARN_SEEDS, TORCH_SEEDS, RUST_SEEDS])
def test_ints_in_range_pass_and_the_rest_is_refused_with_the_bound(below: int) -> None:
    for seed in (0, 7, below - 1, np.uint64(below - 1)):
        assert seed_int(seed, below=below) == int(seed)
    exponent = below.bit_length() - 1
    for seed in (-1, below, below + 5, 1.0, True, "3", np.float64(2.0)):
        with pytest.raises(
            InvalidInputError, match=rf"count must be an int in \[0, 2\*\*{exponent}\)"
        ):
            seed_int(seed, below=below, name="count")  # type: ignore[arg-type]


def test_a_generator_draws_below_the_bound_and_none_is_the_package_seed() -> None:
    for below in (SKLEARN_SEEDS, TORCH_SEEDS, RUST_SEEDS):
        drawn = seed_int(np.random.default_rng(5), below=below)
        assert drawn == int(np.random.default_rng(5).integers(0, min(below, 2**63)))
        assert 0 <= drawn < below
    before = omicsembed.settings.seed
    try:
        omicsembed.settings.seed = 1234
        assert seed_int(None, below=SKLEARN_SEEDS) == 1234
        omicsembed.settings.seed = -2
        with pytest.raises(InvalidInputError, match=r"omicsembed\.settings\.seed must be"):
            seed_int(None, below=SKLEARN_SEEDS)
    finally:
        omicsembed.settings.seed = before


def test_numpy_rng_keeps_a_generator_and_seeds_a_new_one_from_an_int() -> None:
    rng = np.random.default_rng(3)
    assert numpy_rng(rng) is rng
    assert numpy_rng(9).random() == np.random.default_rng(9).random()
    with pytest.raises(InvalidInputError, match="seed must be"):
        numpy_rng(-1)


def test_entry_points_share_the_rule_and_name_the_argument() -> None:
    """Negative seeds were wrapped modulo 2**64 by the sampler and accepted by sklearn paths up
    to 2**32 only; every entry point now refuses what its consumer cannot take, by name."""
    x = np.random.default_rng(0).random((6, 4))
    with pytest.raises(InvalidInputError, match=r"holdout_seed must be an int in \[0, 2\*\*64\)"):
        NarrowFormatSampler(x, batch_size=2, holdout_seed=-1)
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        NarrowFormatSampler(x, batch_size=2, seed=2**64)
    binary = (x > 0.5).astype(np.uint8)
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        select_features_loglinear(binary, binary, 1, seed=2**64)
    labels = np.array(["a", "b"] * 3)
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        knn_classification(x, labels, seed=2**32)


def test_numpy_only_entry_points_refuse_a_negative_seed_by_name() -> None:
    """They passed the seed to numpy, whose ValueError was not an InvalidInputError."""
    from omicsembed.evaluate import distance_preservation
    from omicsembed.pl import reconstruction

    x = np.random.default_rng(1).random((8, 3))
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        distance_preservation(x, x, seed=-1)
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        reconstruction(x, x, max_points=4, seed=-1)


def test_settings_and_jobs_check_their_int_seed_before_any_work(tmp_path: Path) -> None:
    """The explain settings reach scikit-learn (2**32); a Generator is no stored seed; the LDVAE
    job's split and FactorizedEmbedding.embed_new_samples passed the seed to numpy unchecked."""
    import anndata as ad

    from omicsembed.io import ResultFolder
    from omicsembed.jobs import ExplainSettings, ldvae_job
    from omicsembed.models import LDVAE

    for seed in (-1, 2**32, np.random.default_rng(0), None):
        with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*32\)"):
            ExplainSettings(models=("vae",), n_select=(2,), seed=seed)  # type: ignore[arg-type]
    counts = np.random.default_rng(0).poisson(2.0, size=(12, 5)).astype(np.float32)
    with pytest.raises(InvalidInputError, match=r"seed must be an int in \[0, 2\*\*63\)"):
        ldvae_job(
            ad.AnnData(counts), ResultFolder(tmp_path / "out"), model=LDVAE(max_epochs=1), seed=-1
        )
    assert not any((tmp_path / "out").glob("*"))
