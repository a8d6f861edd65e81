"""Tests of the narrow-format minibatch sampler (Trofimov et al. 2020, §2.1)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

from omicsembed import _core
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.train import NarrowBatch, NarrowFormatDataset, NarrowFormatSampler


def _epoch(sampler: NarrowFormatSampler) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batches = list(sampler)
    samples = np.concatenate([b.samples.numpy() for b in batches])
    genes = np.concatenate([b.genes.numpy() for b in batches])
    values = np.concatenate([b.values.numpy() for b in batches])
    return samples, genes, values


def _pairs(samples: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """(i, j) pairs sorted lexicographically, as np.argwhere returns them."""
    pairs = np.stack([samples, genes], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _matrix(rng: np.random.Generator, n: int, m: int, nan_fraction: float) -> np.ndarray:
    X = rng.normal(size=(n, m)).astype(np.float32)
    X[rng.random((n, m)) < nan_fraction] = np.nan
    return X


CASES = [
    # n, m, batch_size, nan_fraction, use_mask, dtype
    (1, 1, 1, 0.0, False, np.float32),
    (1, 37, 5, 0.2, False, np.float32),
    (23, 1, 4, 0.0, True, np.float64),
    (13, 17, 10, 0.3, False, np.float32),
    (13, 17, 1000, 0.0, False, np.float64),
    (40, 65, 64, 0.5, True, np.float32),
    (64, 64, 511, 0.05, True, np.float64),
    (97, 31, 7, 0.9, False, np.float32),
    (200, 150, 4096, 0.1, True, np.float32),
]


@pytest.mark.parametrize(("n", "m", "batch_size", "nan_fraction", "use_mask", "dtype"), CASES)
def test_every_included_entry_exactly_once(
    n: int, m: int, batch_size: int, nan_fraction: float, use_mask: bool, dtype: type
) -> None:
    rng = np.random.default_rng(n * 1000 + m)
    X = _matrix(rng, n, m, nan_fraction).astype(dtype)
    X.flat[0] = 1.5  # at least one observed entry
    mask = rng.random((n, m)) < 0.7 if use_mask else None
    if mask is not None:
        mask.flat[0] = True
    included = ~np.isnan(X) if mask is None else ~np.isnan(X) & mask
    sampler = NarrowFormatSampler(X, batch_size=batch_size, seed=3, mask=mask)
    assert sampler.n_entries == included.sum()
    assert len(sampler) == -(-sampler.n_entries // batch_size)
    assert (sampler.index_bytes == 0) == bool(included.all())
    for epoch in (0, 5):
        sampler.set_epoch(epoch)
        samples, genes, values = _epoch(sampler)
        assert samples.dtype == np.int64 and genes.dtype == np.int64
        assert values.dtype == np.float32
        np.testing.assert_array_equal(_pairs(samples, genes), np.argwhere(included))
        np.testing.assert_array_equal(values, X[samples, genes].astype(np.float32))
        sizes = [len(b) for b in sampler]
        assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_holdout_sides_are_complementary(fraction: float) -> None:
    rng = np.random.default_rng(1)
    X = _matrix(rng, 120, 250, 0.1)
    mask = rng.random(X.shape) < 0.8
    kwargs = {"batch_size": 999, "mask": mask, "holdout_fraction": fraction, "holdout_seed": 11}
    train = NarrowFormatSampler(X, side="train", **kwargs)
    val = train.validation()
    assert val.side == "validation"
    everything = NarrowFormatSampler(X, side="all", **kwargs)
    t = _pairs(*_epoch(train)[:2])
    v = _pairs(*_epoch(val)[:2])
    a = _pairs(*_epoch(everything)[:2])
    observed = np.argwhere(~np.isnan(X) & mask)
    np.testing.assert_array_equal(a, observed)
    assert len(t) == train.n_entries and len(v) == val.n_entries
    both = np.concatenate([t, v])
    np.testing.assert_array_equal(both[np.lexsort((both[:, 1], both[:, 0]))], observed)
    # 120·250·0.9·0.8 ≈ 21600 observed entries: the binomial sd of the fraction is ≤ 0.0035.
    assert abs(len(v) / len(observed) - fraction) < 0.015
    # The split depends on holdout_seed, not on the permutation seed.
    other_seed = NarrowFormatSampler(X, side="validation", **{**kwargs, "holdout_seed": 12})
    assert not np.array_equal(_pairs(*_epoch(other_seed)[:2]), v)
    reseeded = NarrowFormatSampler(X, side="validation", seed=99, **kwargs)
    np.testing.assert_array_equal(_pairs(*_epoch(reseeded)[:2]), v)


def test_descriptors_follow_samples() -> None:
    rng = np.random.default_rng(2)
    X = _matrix(rng, 30, 40, 0.2)
    descriptors = rng.integers(0, 5, size=(30, 3))
    sampler = NarrowFormatSampler(X, batch_size=100, descriptors=descriptors, seed=4)
    assert sampler.n_descriptors == 3
    for batch in sampler:
        assert batch.descriptors is not None
        assert batch.descriptors.dtype == torch.int64
        assert tuple(batch.descriptors.shape) == (len(batch), 3)
        np.testing.assert_array_equal(batch.descriptors.numpy(), descriptors[batch.samples.numpy()])
    one_column = NarrowFormatSampler(X, batch_size=50, descriptors=np.arange(30, dtype=np.int32))
    first = one_column.batch(0)
    assert first.descriptors is not None
    np.testing.assert_array_equal(first.descriptors.numpy()[:, 0], first.samples.numpy())
    assert NarrowFormatSampler(X).batch(0).descriptors is None


def test_epochs_and_seeds() -> None:
    X = _matrix(np.random.default_rng(3), 50, 60, 0.1)
    a = NarrowFormatSampler(X, batch_size=256, seed=7)
    b = NarrowFormatSampler(X, batch_size=256, seed=7)
    c = NarrowFormatSampler(X, batch_size=256, seed=8)
    first = _epoch(a)[:2]
    np.testing.assert_array_equal(_epoch(b)[0], first[0])
    np.testing.assert_array_equal(_epoch(b)[1], first[1])
    assert not np.array_equal(_epoch(c)[1], first[1])
    a.set_epoch(1)
    second = _epoch(a)[:2]
    assert not np.array_equal(second[1], first[1])
    a.set_epoch(0)
    np.testing.assert_array_equal(_epoch(a)[1], first[1])
    # Batches do not depend on the batch size: ranks are permuted, then cut into batches.
    big = NarrowFormatSampler(X, batch_size=X.size, seed=7)
    np.testing.assert_array_equal(big.batch(0).genes.numpy(), first[1])
    # Random access equals iteration; negative indices count from the end.
    np.testing.assert_array_equal(a.batch(-1).genes.numpy(), first[1][-len(a.batch(-1)) :])


def test_big_batches_take_the_parallel_path_identically() -> None:
    X = _matrix(np.random.default_rng(4), 200, 300, 0.2)
    big = NarrowFormatSampler(X, batch_size=40_000, seed=1)
    small = NarrowFormatSampler(X, batch_size=1_000, seed=1)
    b = big.batch(0)
    genes = np.concatenate([small.batch(k).genes.numpy() for k in range(40)])
    samples = np.concatenate([small.batch(k).samples.numpy() for k in range(40)])
    np.testing.assert_array_equal(b.genes.numpy(), genes)
    np.testing.assert_array_equal(b.samples.numpy(), samples)
    np.testing.assert_array_equal(b.values.numpy(), X[samples, genes])


@pytest.mark.parametrize("nan_fraction", [0.0, 0.3])
def test_first_batches_look_uniform(nan_fraction: float) -> None:
    n, m, batch_size = 40, 500, 4000
    X = _matrix(np.random.default_rng(5), n, m, nan_fraction)
    observed = ~np.isnan(X)
    sampler = NarrowFormatSampler(X, batch_size=batch_size, seed=123)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batch = sampler.batch(0)
        # Rows: expected counts proportional to observed entries per row (chi-square, 39 df).
        rows = np.bincount(batch.samples.numpy(), minlength=n)
        expected = observed.sum(axis=1) / observed.sum() * batch_size
        assert stats.chisquare(rows, expected).pvalue > 1e-4
        # Genes grouped into 25 bins of 20 columns (chi-square, 24 df).
        bins = np.bincount(batch.genes.numpy() // 20, minlength=m // 20)
        expected_bins = observed.reshape(n, m // 20, 20).sum(axis=(0, 2))
        expected_bins = expected_bins / observed.sum() * batch_size
        assert stats.chisquare(bins, expected_bins).pvalue > 1e-4
        # Position in the batch is unrelated to the position in the matrix.
        flat = batch.samples.numpy() * m + batch.genes.numpy()
        assert abs(stats.spearmanr(np.arange(batch_size), flat).statistic) < 0.08


def test_any_layout_and_dtype() -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(size=(30, 44))
    views = {
        "fortran": np.asfortranarray(base.astype(np.float32)),
        "strided": base[::2, ::-3],
        "ints": rng.integers(0, 100, size=(15, 15)),
    }
    for name, X in views.items():
        sampler = NarrowFormatSampler(X, batch_size=64, seed=2)
        samples, genes, values = _epoch(sampler)
        assert sampler.n_entries == X.size, name
        np.testing.assert_array_equal(_pairs(samples, genes), np.argwhere(np.ones(X.shape)))
        np.testing.assert_array_equal(values, X[samples, genes].astype(np.float32), err_msg=name)


def test_drop_last() -> None:
    X = np.ones((10, 10), dtype=np.float32)
    sampler = NarrowFormatSampler(X, batch_size=30, drop_last=True)
    assert len(sampler) == 3
    assert [len(b) for b in sampler] == [30, 30, 30]
    assert len(NarrowFormatSampler(X, batch_size=30)) == 4
    with pytest.raises(IndexError):
        sampler.batch(3)


def test_batch_to_device_and_pickle() -> None:
    X = _matrix(np.random.default_rng(7), 20, 30, 0.2)
    sampler = NarrowFormatSampler(X, batch_size=64, descriptors=np.arange(20), seed=5)
    sampler.set_epoch(2)
    batch = sampler.batch(1)
    moved = batch.to("cpu")
    assert isinstance(moved, NarrowBatch) and len(moved) == 64
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone.epoch == 2
    again = clone.batch(1)
    for field in ("samples", "genes", "values", "descriptors"):
        assert torch.equal(getattr(again, field), getattr(batch, field))


def test_dataloader_with_two_workers_yields_each_entry_once() -> None:
    X = _matrix(np.random.default_rng(8), 60, 70, 0.25)
    sampler = NarrowFormatSampler(X, batch_size=300, seed=9)
    dataset = NarrowFormatDataset(sampler)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(sampler)
        samples = np.concatenate([b.samples.numpy() for b in batches])
        genes = np.concatenate([b.genes.numpy() for b in batches])
        values = np.concatenate([b.values.numpy() for b in batches])
        np.testing.assert_array_equal(_pairs(samples, genes), np.argwhere(~np.isnan(X)))
        np.testing.assert_array_equal(values, X[samples, genes])
    # Without workers the dataset is the sampler's epoch in order.
    single = np.concatenate([b.genes.numpy() for b in dataset])
    np.testing.assert_array_equal(single, _epoch(sampler)[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_turns_rayon_off_and_still_samples(forked_child) -> None:
    X = _matrix(np.random.default_rng(9), 100, 400, 0.1)
    sampler = NarrowFormatSampler(X, batch_size=30_000, seed=1)
    expected = sampler.batch(0).genes.numpy()  # the parent has used rayon's pool
    assert _core._sampler_parallelism_allowed()
    # the child must not deadlock on the parent's (absent) rayon threads
    answer = forked_child(
        lambda: (
            (not _core._sampler_parallelism_allowed())
            and np.array_equal(sampler.batch(0).genes.numpy(), expected)
        ),
        30.0,
    )
    assert answer is not None, "forked child did not answer within 30 s (deadlock?)"
    assert answer
    assert _core._sampler_parallelism_allowed()


def test_seed_from_generator() -> None:
    X = np.ones((5, 5))
    a = NarrowFormatSampler(X, seed=np.random.default_rng(0), batch_size=25)
    b = NarrowFormatSampler(X, seed=np.random.default_rng(0), batch_size=25)
    assert torch.equal(a.batch(0).genes, b.batch(0).genes)


def test_errors_are_typed() -> None:
    X = np.zeros((4, 5), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="2-D"):
        NarrowFormatSampler(np.zeros(5))
    with pytest.raises(InvalidInputError, match="2-D"):
        NarrowFormatSampler(np.zeros((2, 2, 2)))
    bad = X.copy()
    bad[1, 2] = np.inf
    with pytest.raises(InvalidInputError, match=r"sample 1, gene 2"):
        NarrowFormatSampler(bad)
    bad64 = np.zeros((3, 3))
    bad64[2, 0] = -1e300  # overflows float32
    with pytest.raises(InvalidInputError, match=r"sample 2, gene 0"):
        NarrowFormatSampler(bad64)
    with pytest.raises(ShapeMismatchError, match="mask"):
        NarrowFormatSampler(X, mask=np.ones((5, 4), dtype=bool))
    with pytest.raises(ShapeMismatchError, match="mask"):
        NarrowFormatSampler(X, mask=np.ones(20, dtype=bool))
    with pytest.raises(InvalidInputError, match=r"0 .* 1"):
        NarrowFormatSampler(X, mask=np.full((4, 5), 2))
    with pytest.raises(InvalidInputError, match=r"0 .* 1"):
        _core.NarrowSampler(X, mask=np.full((4, 5), 3, dtype=np.uint8))
    with pytest.raises(ShapeMismatchError, match="descriptors"):
        NarrowFormatSampler(X, descriptors=np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(InvalidInputError, match=">= 0"):
        NarrowFormatSampler(X, descriptors=np.array([[0], [1], [-1], [2]]))
    with pytest.raises(InvalidInputError, match="integer"):
        NarrowFormatSampler(X, descriptors=np.zeros((4, 1)))
    for batch_size in (0, -3):
        with pytest.raises(InvalidInputError, match="batch_size"):
            NarrowFormatSampler(X, batch_size=batch_size)
    with pytest.raises(InvalidInputError, match="batch_size"):
        _core.NarrowSampler(X, batch_size=0)
    for fraction in (1.0, -0.1, float("nan")):
        with pytest.raises(InvalidInputError, match="holdout_fraction"):
            NarrowFormatSampler(X, holdout_fraction=fraction)
    with pytest.raises(InvalidInputError, match="side"):
        NarrowFormatSampler(X, side="test")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no included entries"):
        NarrowFormatSampler(np.full((3, 3), np.nan))
    with pytest.raises(InvalidInputError, match="no included entries"):
        NarrowFormatSampler(X, mask=np.zeros((4, 5), dtype=bool))
    with pytest.raises(InvalidInputError, match="no included entries"):
        NarrowFormatSampler(np.zeros((0, 3)))
    with pytest.raises(InvalidInputError, match="holdout_fraction > 0"):
        NarrowFormatSampler(X).validation()
    with pytest.raises(InvalidInputError, match="epoch"):
        NarrowFormatSampler(X).set_epoch(-1)
    with pytest.raises(InvalidInputError, match="dtype"):
        NarrowFormatSampler(np.array([["a", "b"]]))
    with pytest.raises(IndexError):
        NarrowFormatSampler(X, batch_size=7).batch(3)
    with pytest.raises(InvalidInputError, match="out of range"):
        _core.NarrowSampler(X, batch_size=7).batch(3, 0)
