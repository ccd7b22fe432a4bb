"""Importing a source tree of skmoe whose compiled core is not built."""

import shutil
import subprocess
import sys
from pathlib import Path

import skmoe

SOURCE_FILES = shutil.ignore_patterns("*.so", "*.pyd", "*.c", "*.html", "__pycache__")


def test_missing_compiled_core_is_explained(tmp_path):
    """``import skmoe`` from a source tree without ``_kernels`` says what to do.

    The child runs without ``site`` (``-S``), as where skmoe is not installed:
    an editable install's import hook would otherwise find the built
    ``_kernels`` of the checkout for the copy. Nothing past the first import
    of ``skmoe/__init__.py`` is reached, so no other package is needed.
    """
    source = tmp_path / "repo" / "skmoe"
    shutil.copytree(Path(skmoe.__file__).parent, source, ignore=SOURCE_FILES)
    assert (source / "_kernels.pyx").exists()
    assert not [p for p in source.rglob("_kernels*") if p.suffix in (".so", ".pyd")]
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(source.parent)!r})\n"
        "try:\n"
        "    import skmoe\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__)\n"
        "    print(error)\n"
        "    cause = error.__cause__\n"
        "    print(type(cause).__name__, cause.name)\n"
        "else:\n"
        "    print('imported', skmoe.__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    kind, message, cause = result.stdout.strip().split("\n")
    assert kind == "ImportError"
    assert message == (
        "skmoe's compiled core (skmoe._kernels) is not built. You are probably importing the "
        f"skmoe source tree at {source} instead of the installed package (Python looks in the "
        f"current directory first, so this happens when running from {source.parent}). "
        "Install skmoe with 'pip install .' (or 'pip install -e .' for development, which "
        "builds the core in place) and run Python from another directory."
    )
    assert cause == "ModuleNotFoundError skmoe._kernels"  # the original error is chained
