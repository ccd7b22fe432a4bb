"""Sphinx configuration for the skmoe documentation.

Build with ``make -C doc html`` (or ``python -m sphinx -b html doc doc/_build/html``).
The package is imported as installed (``pip install ".[docs]"``), never from
the source tree, which has no compiled core.
"""

import re
import socket
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from docutils import nodes

import skmoe

# -- Project information -----------------------------------------------------

project = "skmoe"
author = "The skmoe developers"
copyright = f"{date.today().year}, {author}"
release = skmoe.__version__
# The short X.Y version.
version = re.match(r"\d+(\.\d+)?", release).group(0)

# -- General configuration ---------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    # MathJax, not imgmath: imgmath needs LaTeX and dvipng at build time (a
    # build machine rarely has them); MathJax needs nothing to build, and the
    # browser renders the formulas from its script (loaded from a CDN).
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autodoc_typehints = "none"

# The class template lists the methods itself; numpydoc must not add a second list.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- intersphinx -------------------------------------------------------------
# Links to the documentation of the libraries skmoe builds on. An inventory is
# read from doc/_inventories/<name>.inv when that file exists (to build with
# links but without network), else fetched from the site when the site answers
# a connection within a second or two, else left out: an offline build then
# renders those references as plain text instead of failing on the fetch.

INTERSPHINX_SITES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "sklearn": "https://scikit-learn.org/stable/",
    "joblib": "https://joblib.readthedocs.io/en/stable/",
}
_INVENTORIES = Path(__file__).parent / "_inventories"


def _reachable(urls, timeout=2.0):
    """The URLs whose host accepts a TCP connection within ``timeout`` seconds.

    The hosts are probed in parallel, in daemon threads that are abandoned
    after ``timeout``, since a name lookup offline can hang longer.
    """
    answered = set()

    def probe(url):
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
                answered.add(url)
        except OSError:
            pass

    threads = [threading.Thread(target=probe, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return set(answered)


def _intersphinx_mapping():
    local = {name: _INVENTORIES / f"{name}.inv" for name in INTERSPHINX_SITES}
    online = _reachable(
        [url for name, url in INTERSPHINX_SITES.items() if not local[name].is_file()]
    )
    mapping = {}
    for name, url in INTERSPHINX_SITES.items():
        if local[name].is_file():
            mapping[name] = (url, str(local[name]))
        elif url in online:
            mapping[name] = (url, None)
    return mapping


intersphinx_mapping = _intersphinx_mapping()
intersphinx_timeout = 10

# Labels of scikit-learn's documentation cited by the docstrings our estimators
# inherit from it (``score``, ``get_metadata_routing``, ``set_fit_request``...).
# With scikit-learn's inventory intersphinx resolves them; without it (offline)
# they link to the pages here, rather than failing as undefined labels.
SKLEARN_LABELS = {
    ("ref", "metadata_routing"): "metadata_routing.html",
    ("ref", "accuracy_score"): "modules/model_evaluation.html#accuracy-score",
    ("ref", "r2_score"): "modules/model_evaluation.html#r2-score",
    ("term", "meta-estimator"): "glossary.html#term-meta-estimator",
}


def _sklearn_label(app, env, node, contnode):
    """Resolve a scikit-learn label that intersphinx could not (see SKLEARN_LABELS)."""
    if node.get("refdomain") != "std":
        return None
    target = node.get("reftarget", "")
    page = SKLEARN_LABELS.get((node.get("reftype"), target.lower()))
    if page is None:
        return None
    reference = nodes.reference(
        "",
        "",
        internal=False,
        refuri=INTERSPHINX_SITES["sklearn"] + page,
        reftitle="(in scikit-learn)",
    )
    reference += contnode
    return reference


# -- sphinx-gallery ----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # demo.py is the README's command-line demonstration, not a gallery page.
    "ignore_pattern": r"(__init__|demo)\.py",
    "doc_module": ("skmoe",),
    # "Examples using ..." mini-galleries on the API pages (see _templates/class.rst).
    "backreferences_dir": "generated",
    # Record uses of gates and warnings under the names the API pages document
    # (skmoe.gates.SoftmaxGate), not the shortest import path (skmoe.SoftmaxGate).
    "prefer_full_module": {r"^skmoe\.(gates|exceptions)\."},
    "reference_url": {"skmoe": None},
}

# -- HTML output -------------------------------------------------------------

html_theme = "alabaster"
html_theme_options = {
    "description": "Mixtures of experts for scikit-learn, trained by EM",
    "fixed_sidebar": True,
}
html_static_path = []
html_title = f"skmoe {release}"


# -- Extension hooks ---------------------------------------------------------


def setup(app):
    # After intersphinx's own handler (priority 500), which wins when it has
    # scikit-learn's inventory.
    app.connect("missing-reference", _sklearn_label, priority=900)
