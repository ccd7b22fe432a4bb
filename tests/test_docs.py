"""The documentation's code runs: docstring examples (as doctests) and the README snippet."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import skmoe

README = Path(__file__).resolve().parents[1] / "README.md"

# Modules whose examples need an optional package.
_OPTIONAL = {
    "skmoe.inspection": "pandas",
    "skmoe.plotting": "matplotlib",
    "skmoe._dask": "dask.array",
    "skmoe._cli": "pandas",
    "skmoe._demo": "pandas",
}


def _modules():
    for info in pkgutil.walk_packages(skmoe.__path__, "skmoe."):
        if not info.name.endswith("__main__"):
            yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples_run(name):
    if name in _OPTIONAL:
        pytest.importorskip(_OPTIONAL[name])
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(
        module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    assert failures == 0


def test_readme_snippet_runs_as_written():
    text = README.read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", text, flags=re.DOTALL).group(1)
    namespace = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    assert "moe" in namespace and hasattr(namespace["moe"], "experts_")
