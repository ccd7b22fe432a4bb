"""Top-k prediction against dense prediction of the same fitted model.

16 tree experts (``DecisionTreeRegressor(max_depth=12)``), fitted once with
``top_k=2``; the same model then predicts 400,000 rows sparsely (each row
evaluated by its 2 routed experts) and densely (``set_params(top_k=None)``:
every expert on every row). Also reports what the switch does to accuracy.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor

from _timing import print_table, time_interleaved, verdict


def run(quick=False):
    """Print the table; return the target verdict lines."""
    n_train, n_predict, n_experts = (10_000, 50_000, 16) if quick else (40_000, 400_000, 16)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_train + n_predict, 10))
    y = np.sin(2 * X[:, 0]) * X[:, 1] + X[:, 2] ** 2 + 0.1 * rng.normal(size=X.shape[0])
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    model = MixtureOfExpertsRegressor(
        n_experts,
        estimator=DecisionTreeRegressor(max_depth=12),
        top_k=2,
        max_iter=5,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)

    def predict(top_k):
        return lambda: model.set_params(top_k=top_k).predict(X_test)

    rows = []
    timings = time_interleaved({k: predict(k) for k in (2, 4, None)}, repeats=5)
    for top_k, seconds in timings.items():
        score = model.set_params(top_k=top_k).score(X_test, y_test)
        rows.append(
            [
                "dense" if top_k is None else f"top-{top_k}",
                f"{seconds:.3f}",
                f"{timings[None] / seconds:.2f}",
                f"{score:.4f}",
            ]
        )
    model.set_params(top_k=2)
    ratio = timings[None] / timings[2]
    target = verdict(f"top-2 of 16 at least 4x faster than dense (got {ratio:.2f}x)", ratio >= 4)
    print_table(
        f"Top-k prediction: {n_experts} x DecisionTreeRegressor(max_depth=12), "
        f"{n_predict:,} rows (model trained with top_k=2)",
        ["routing", "predict (s)", "dense/this", "held-out R2"],
        rows,
        notes=[
            "Dense prediction of the top-2-trained model re-admits experts the "
            "sparse gate cut off; the R2 column shows what that costs or gains."
        ],
        targets=[target],
    )
    return [target]


if __name__ == "__main__":
    run()
