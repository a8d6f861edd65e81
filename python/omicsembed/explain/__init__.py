"""Log-linear exploration of what generative models learned (Hess, Hackenberg & Binder 2020).

- :mod:`~omicsembed.explain.loglinear` — contingency tables, G², IPF and the stepwise log-linear
  selection of features that jointly pattern with latent units (Rust kernels).
- :mod:`~omicsembed.explain.patterns` — top patterns, Jensen–Shannon distances, pattern maps.
- :mod:`~omicsembed.explain.workflow` — :func:`explain` for any generative model and the
  :class:`SelectionMonitor` for training.
- :mod:`~omicsembed.explain.label_transfer` — label transfer from observed to synthetic cells and
  its Davies–Bouldin ranking against random gene sets (§2.6).
- :mod:`~omicsembed.explain.baselines` — NMF gene selection, the energy statistic between
  synthetic and held-out cells, and the :class:`EnergyStatisticMonitor` that uses it to choose
  the training epoch (and, one monitor per run, the initialisation) whose model is explained.
"""

from omicsembed.explain.baselines import (
    EnergyStatisticMonitor,
    energy_statistic,
    nmf_gene_selection,
)
from omicsembed.explain.label_transfer import (
    LabelTransferRanking,
    gene_set_rank,
    label_transfer_davies_bouldin,
    rank_against_random_gene_sets,
    transfer_labels,
)
from omicsembed.explain.loglinear import (
    LoglinearSelection,
    contingency_table,
    g_squared,
    ipf,
    select_features_loglinear,
)
from omicsembed.explain.patterns import PatternMap, jensen_shannon, pattern_map, top_patterns
from omicsembed.explain.workflow import Explanation, GenerativeModel, SelectionMonitor, explain

__all__ = [
    "EnergyStatisticMonitor",
    "Explanation",
    "GenerativeModel",
    "LabelTransferRanking",
    "LoglinearSelection",
    "PatternMap",
    "SelectionMonitor",
    "contingency_table",
    "energy_statistic",
    "explain",
    "g_squared",
    "gene_set_rank",
    "ipf",
    "jensen_shannon",
    "label_transfer_davies_bouldin",
    "nmf_gene_selection",
    "pattern_map",
    "rank_against_random_gene_sets",
    "select_features_loglinear",
    "top_patterns",
    "transfer_labels",
]
