"""Log-linear exploration of what generative models learned (Hess, Hackenberg & Binder 2020).

- :mod:`~omicsembed.explain.label_transfer` — label transfer from observed to synthetic cells and
  its Davies–Bouldin ranking against random gene sets (§2.6).
- :mod:`~omicsembed.explain.baselines` — NMF gene selection and the energy statistic used to
  choose epochs and initialisations.
"""

from omicsembed.explain.baselines import energy_statistic, nmf_gene_selection
from omicsembed.explain.label_transfer import (
    LabelTransferRanking,
    label_transfer_davies_bouldin,
    rank_against_random_gene_sets,
    transfer_labels,
)

__all__ = [
    "LabelTransferRanking",
    "energy_statistic",
    "label_transfer_davies_bouldin",
    "nmf_gene_selection",
    "rank_against_random_gene_sets",
    "transfer_labels",
]
