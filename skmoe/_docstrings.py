"""Docstring sections shared by the regressor and the classifier."""

SHARED_PARAMETERS = """\
gate : "softmax" or BaseGate instance, default="softmax"
        The gating network. ``"softmax"`` is ``SoftmaxGate()`` with its
        defaults; pass ``SoftmaxGate(C=...)`` to set (or grid-search, as
        ``gate__C``) its own parameters.

    gate_features, expert_features : array-like of int, str or bool, default=None
        Columns the gate, resp. the experts, see: indices, names (with a
        DataFrame) or a boolean mask; ``None`` means all columns. The gate's
        columns are the "concomitant variables" of classical mixtures of
        regressions; ``gate_features=[]`` gives a gate with constant mixing
        proportions.

    init : {"auto", "kmeans", "random", "residuals", "residual_tree", "softmax"} \
or array-like of shape (n_samples, n_experts), default="auto"
        Starting responsibilities: ``"kmeans"``, one-hot k-means clusters of
        the standardised gate features (and, for regression, the target);
        ``"random"``, rows of a flat Dirichlet; ``"residuals"``, groups of
        equal size by rank of the residuals of one expert fitted to all rows
        (regimes that differ in ``y`` at the same ``x``); ``"residual_tree"``,
        the leaves of a tree with ``n_experts`` leaves that splits the gate
        features by those residuals; ``"softmax"``, the responsibilities of a
        softmax-gated fit of the same experts (what tree gates need: they keep
        the regions they start from); an array, used as given. ``"auto"``:
        start 0 is ``"kmeans"`` for the softmax and HME gates and
        ``"softmax"`` for tree gates; further starts take ``"residuals"``,
        ``"random"``, ``"residual_tree"`` and ``"kmeans"`` in turn (for tree
        gates, as the start of their softmax warm-up), so that ``n_init``
        starts explore different basins.

    n_init : int, default=1
        Number of EM starts. With more than one, every start runs 20
        iterations and the best of them continues to convergence
        (Biernacki, Celeux & Govaert 2003; with ``early_stopping`` all run in
        full). The start with the highest log-likelihood is kept; every
        start's is recorded in ``init_log_likelihoods_``, its kind in
        ``init_methods_``.

    max_iter : int, default=100
        Maximum EM iterations (M-steps) per start.

    tol : float, default=1e-4
        EM stops when the mean per-sample log-likelihood changed by less than
        ``tol`` in each of the last two iterations and the gain still ahead,
        extrapolated from those changes (Aitken), is below ``tol`` too: a
        slow climb across a plateau does not stop EM.

    accelerate : bool, default=True
        Accelerate EM by SQUAREM (Varadhan & Roland 2008) when every
        parameter is a vector (softmax or HME gate; linear experts such as
        the default, ``Ridge`` or ``LogisticRegression``): two EM steps give
        a direction along which EM crawls, a longer step is tried along it
        and kept only if the log-likelihood does not go down. Slow tails
        then take tens of iterations instead of thousands. Other models run
        plain EM.

    random_state : int, RandomState instance or None, default=None
        Seeds the starts and every expert's own ``random_state``. An int gives
        identical fits for any ``n_jobs``.

    n_jobs : int, default=None
        Experts fitted in parallel by joblib in each M-step (one worker pool
        per ``fit``). ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; ``-1`` uses all processors.
        Experts that are all :class:`~skmoe.experts.WeightedLeastSquares`
        (the regressor's default) are refit together in one compiled,
        OpenMP-threaded pass instead, whatever ``n_jobs`` says.

    verbose : int, default=0
        1 prints each start's result and every 10th iteration, 2 every
        iteration: the mean log-likelihood, its change, the time elapsed and
        an estimate of the time left.

    warm_start : bool, default=False
        Continue EM from the previous fit instead of starting afresh
        (``n_init`` and ``init`` are then ignored; ``X`` must have the
        columns of the previous fit).

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows (stratified by
        class for classification) and stop EM once their mean log-likelihood
        has not improved by more than ``tol`` for ``n_iter_no_change``
        iterations; the iterate that scored best on them is kept.

    validation_fraction : float, default=0.1
        Share of the rows held out for ``early_stopping``.

    n_iter_no_change : int, default=10
        Iterations without improvement on the held-out rows before
        ``early_stopping`` stops EM.

    top_k : int, default=None
        Sparse routing (Shazeer et al. 2017; Mixtral routes to 2 of 8): each
        row keeps its ``top_k`` largest gate probabilities, renormalised, in
        training and in prediction, and each expert is evaluated only on the
        rows routed to it. ``None`` routes every row to every expert. Read at
        prediction time too: ``set_params(top_k=None)`` on a model fitted with
        ``top_k`` predicts densely with the same experts and gate, which
        re-admits the experts the sparse gate cut off (usually a small change,
        since their gate probabilities are small, but it is not the model that
        was trained). ``top_k=1`` is refused at fit: with one expert per
        row the responsibilities are the gate's own choices and EM cannot
        move the gate; train with ``top_k=2`` and predict with ``top_k=1``.

    min_responsibility : float, default=1e-3
        Conditional computation: expert ``k`` is refit only on rows with
        responsibility ``R[i, k] > min_responsibility`` (relative to the row's
        sample weight), so the experts' total work grows like n, not
        n * n_experts. ``0`` refits on every row with positive responsibility
        (exact EM).

    min_expert_share : float, default=0.0
        Load balancing: an expert whose share of the responsibility falls
        below this fraction is re-seeded on the worst-explained rows (within
        the re-seeding budget of ``n_experts`` per start, in the first half
        of ``max_iter``). An expert under half a sample's worth is always
        re-seeded. ``expert_share_`` reports the shares."""

SHARED_ATTRIBUTES = """\
experts_ : list of estimators
        The fitted experts.

    gate_ : BaseGate
        The fitted gate.

    n_iter_ : int
        EM iterations of the kept start.

    converged_ : bool
        Whether the kept start met ``tol`` within ``max_iter``.

    log_likelihood_ : float
        Final weighted mean per-sample log-likelihood ``log p(y | x)`` on the
        training data.

    log_likelihood_history_ : ndarray of shape (at most `n_iter_` + 1,)
        The same after the initial M-step and after every iteration (but not
        at the accelerator's rejected trial points; see ``accelerate``). A
        warm start continues it.

    validation_log_likelihood_history_ : ndarray
        With ``early_stopping``: the mean held-out log-likelihood after the
        initial M-step and after every iteration.

    init_log_likelihoods_ : ndarray of shape (n_init,)
        Final mean log-likelihood of every start (after its short run, for
        starts that did not continue; see ``n_init``).

    init_methods_ : ndarray of shape (n_init,), dtype=object
        How each start began (``"kmeans"``, ``"residuals"``, ...; ``"given"``
        for an array ``init``, ``"resume"`` for a warm start).

    expert_share_ : ndarray of shape (n_experts,)
        Each expert's share of the (weighted) responsibility on the training
        data.

    gate_features_, expert_features_ : ndarray of int
        Column indices the gate, resp. the experts, use.

    gate_encoder_ : transformer or None
        How the gate's columns become numbers: one-hot encoding of
        categorical columns, mean imputation plus missing-indicator columns
        for a gate that takes no missing values; None when the columns are
        used as they are. ``gate_.feature_names_in_`` names its outputs.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names."""


def fill(docstring):
    """Insert the shared sections into an estimator's docstring."""
    return docstring.replace("%(shared_parameters)s", SHARED_PARAMETERS).replace(
        "%(shared_attributes)s", SHARED_ATTRIBUTES
    )
