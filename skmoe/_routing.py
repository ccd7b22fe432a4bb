"""Routing rows to experts: dense, or sparse top-k (Shazeer et al. 2017).

A route is a pair ``(expert_ids, route_weights)`` of shape ``(n_samples, k)``:
row ``i`` is sent to the experts numbered ``expert_ids[i]`` with gate weights
``route_weights[i]``
(summing to one). Dense routing is ``k = n_experts``. Evaluating experts
through routes costs ``n * k`` expert evaluations instead of
``n * n_experts``.
"""

import numpy as np
from scipy.special import softmax

from ._features import take_rows
from ._kernels import group_by_expert, top_k_softmax
from ._threads import kernel_threads


def routes(logits, top_k):
    """``(expert_ids, route_weights)`` of each row: its ``top_k`` experts, or all of them."""
    n_samples, n_experts = logits.shape
    logits = np.ascontiguousarray(logits, dtype=np.float64)
    if top_k is None or top_k >= n_experts:
        expert_ids = np.broadcast_to(np.arange(n_experts), logits.shape)
        return expert_ids, softmax(logits, axis=1)
    expert_ids = np.empty((n_samples, top_k), dtype=np.intp)
    route_weights = np.empty((n_samples, top_k))
    top_k_softmax(logits, top_k, expert_ids, route_weights, kernel_threads(logits.size))
    return expert_ids, route_weights


def routed_logits(logits, top_k):
    """The gate logits with every expert a row is not routed to set to -inf."""
    if top_k is None or top_k >= logits.shape[1]:
        return logits
    expert_ids, _ = routes(logits, top_k)
    rows = np.arange(logits.shape[0])[:, None]
    routed = np.full_like(logits, -np.inf)
    routed[rows, expert_ids] = logits[rows, expert_ids]
    return routed


def evaluate_routes(expert_ids, likelihood, fitted_experts, X):
    """Each fitted expert's output on the rows routed to it, shaped like ``expert_ids``.

    Returns an array of shape ``(n_samples, k)`` (regression) or
    ``(n_samples, k, n_classes)`` (classification).
    """
    n_samples, k = expert_ids.shape
    outputs = likelihood.empty_outputs(n_samples, k)
    flat = outputs.reshape(n_samples * k, *outputs.shape[2:])
    if k == len(fitted_experts):
        # Dense routes (``routes`` keeps expert order): every expert sees every row.
        for e, expert in enumerate(fitted_experts):
            outputs[:, e] = likelihood.expert_output(expert, X)
        return outputs
    order = np.empty(n_samples * k, dtype=np.intp)
    offsets = np.empty(len(fitted_experts) + 1, dtype=np.intp)
    group_by_expert(np.ascontiguousarray(expert_ids), order, offsets)
    for e, expert in enumerate(fitted_experts):
        positions = order[offsets[e] : offsets[e + 1]]
        if positions.size:
            flat[positions] = likelihood.expert_output(expert, take_rows(X, positions // k))
    return outputs


def scatter_routes(expert_ids, values, n_experts, fill):
    """Dense ``(n_samples, n_experts, ...)`` array holding ``values`` at the routes."""
    dense = np.full((expert_ids.shape[0], n_experts, *values.shape[2:]), fill, dtype=values.dtype)
    dense[np.arange(expert_ids.shape[0])[:, None], expert_ids] = values
    return dense
