"""Build the compiled core of skmoe (metadata lives in pyproject.toml).

OpenMP threads the kernels' row loops where the compiler supports it; where it
does not (say Apple clang without libomp) the extension builds without it and
the kernels run on one thread.
"""

import os
import sys
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}

OPENMP_FLAGS = {"msvc": (["/openmp"], [])}
DEFAULT_OPENMP_FLAGS = (["-fopenmp"], ["-fopenmp"])


def _compiler_supports_openmp(compiler, compile_flags, link_flags):
    """Try to compile and link a tiny OpenMP program with these flags."""
    source = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }
        """
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "check_openmp.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=compile_flags)
            compiler.link_executable(
                objects, os.path.join(tmp, "check_openmp"), extra_postargs=link_flags
            )
        except Exception:  # any compile or link error means "no OpenMP"
            return False
    return True


class BuildExtWithOpenMP(build_ext):
    """build_ext that adds OpenMP flags when the compiler accepts them."""

    def build_extensions(self):
        compile_flags, link_flags = OPENMP_FLAGS.get(
            self.compiler.compiler_type, DEFAULT_OPENMP_FLAGS
        )
        if os.environ.get("SKMOE_NO_OPENMP") or not _compiler_supports_openmp(
            self.compiler, compile_flags, link_flags
        ):
            print("skmoe: building without OpenMP; kernels run single-threaded.", file=sys.stderr)
            compile_flags, link_flags = [], []
        for ext in self.extensions:
            ext.extra_compile_args += compile_flags
            ext.extra_link_args += link_flags
        super().build_extensions()


# -fno-trapping-math (assume floating-point operations do not trap, the
# default in clang) lets GCC turn the clamps in _fastexp.h into blends, so the
# exp loops vectorise; it changes no result.
OPTIMISE_FLAGS = ["/O2"] if sys.platform == "win32" else ["-O3", "-fno-trapping-math"]

extensions = [
    Extension(
        "skmoe._kernels",
        ["skmoe/_kernels.pyx"],
        include_dirs=["skmoe"],
        depends=["skmoe/_fastexp.h"],
        extra_compile_args=OPTIMISE_FLAGS,
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=COMPILER_DIRECTIVES),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
