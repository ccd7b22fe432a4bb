"""Sphinx configuration for the skmoe documentation.

Build with ``make -C doc html`` (or ``python -m sphinx -b html doc doc/_build/html``).
The package is imported as installed (``pip install ".[docs]"``), never from
the source tree, which has no compiled core.
"""

import re
from datetime import date

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
# The inventories are fetched at build time; offline, Sphinx only warns that
# it could not reach them and the cross-references render as plain text.

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", None),
}
intersphinx_timeout = 10

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
