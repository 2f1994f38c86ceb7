"""Pruning: granularities, importance scorers, unit selection and training masks.

The pieces, each usable alone:

* :mod:`~dtmm.prune.granularity` -- which weights form a pruning unit (``filterlet``,
  ``filter``, ``element``, ``pattern``), on OHWI / OI weights.
* :mod:`~dtmm.prune.importance` -- scorers (``taylor``, ``l1``, ``l2``, ``chip``), plain
  callables returning one score per unit per layer.
* :mod:`~dtmm.prune.select` -- which units to prune: per layer, globally, ratio files.
* :mod:`~dtmm.prune.joint` -- DTMM's joint filter (beta) + filterlet (alpha) pruning and
  dead-filter reporting.
* :mod:`~dtmm.prune.masks` -- masks on a torch model (parametrizations) that training
  cannot undo; save / load; baking.
* :mod:`~dtmm.prune.dead` / :mod:`~dtmm.prune.surgery` -- dead (constant) channels leave
  the IR graph / the torch model itself, their constants folded into consumers.

Example (score, choose, mask, fine-tune, bake):
    >>> import torch
    >>> from torch import nn
    >>> from dtmm import prune
    >>> torch.manual_seed(0) is not None
    True
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    >>> data = [(torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,)))]
    >>> scores = prune.taylor(model, ["0"], "filterlet", data=data, batches=1)
    >>> masks = prune.masks_from_scores(model, scores, "filterlet", {"0": 0.5})
    >>> _ = prune.apply_masks(model, masks)
    >>> round(prune.sparsity(model)["0"], 3)
    0.5
    >>> _ = prune.remove_masks(model)
"""
from dtmm.prune.granularity import (
    DEFAULT_PATTERNS,
    ELEMENT,
    FILTER,
    FILTERLET,
    GRANULARITIES,
    PATTERN,
    Element,
    Filter,
    Filterlet,
    Granularity,
    Pattern,
    UnitGranularity,
    derive_pattern_library,
    get_granularity,
)
from dtmm.prune.importance import (
    SCORERS,
    Scorer,
    channel_independence,
    chip,
    get_scorer,
    l1,
    l2,
    taylor,
    taylor_contributions,
)
from dtmm.prune.joint import dead_filters, joint_mask, joint_masks
from dtmm.prune.dead import DeadChannelReport, remove_dead_channels
from dtmm.prune.layout import (
    PruneError,
    from_ohwi,
    is_depthwise,
    prunable_layers,
    resolve_layers,
    to_ohwi,
    weight_ohwi,
    weight_param,
)
from dtmm.prune.masks import (
    WeightMask,
    apply_masks,
    get_masks,
    load_masked_state_dict,
    masks_from_scores,
    masks_to_ohwi,
    masks_to_torch,
    remove_masks,
    sparsity,
)
from dtmm.prune.surgery import ChannelMap, ShrinkResult, dead_filters_of, rebuild_shrunk, shrink_model
from dtmm.prune.select import check_ratio, load_ratios, num_pruned, select, select_global

__all__ = [
    "DEFAULT_PATTERNS", "ELEMENT", "FILTER", "FILTERLET", "GRANULARITIES", "PATTERN",
    "Element", "Filter", "Filterlet", "Granularity", "Pattern", "UnitGranularity",
    "derive_pattern_library", "get_granularity",
    "SCORERS", "Scorer", "channel_independence", "chip", "get_scorer", "l1", "l2", "taylor",
    "taylor_contributions",
    "dead_filters", "joint_mask", "joint_masks",
    "PruneError", "from_ohwi", "is_depthwise", "prunable_layers", "resolve_layers", "to_ohwi",
    "weight_ohwi", "weight_param",
    "WeightMask", "apply_masks", "get_masks", "load_masked_state_dict", "masks_from_scores",
    "masks_to_ohwi", "masks_to_torch", "remove_masks", "sparsity",
    "ChannelMap", "ShrinkResult", "dead_filters_of", "rebuild_shrunk", "shrink_model",
    "check_ratio", "load_ratios", "num_pruned", "select", "select_global",
]
