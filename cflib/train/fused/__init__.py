"""The fused training step of ``dot`` and ``biased-mf``: a TensorFlow op in C++.

``mf_adagrad.cc`` defines ``CfpipeMfAdagradStep`` (and ``svdpp.cc`` the same step for
``svdpp``, ``CfpipeSvdppAdagradStep``): scores, row gradients and
``SparseAdagrad``'s row-wise update of a batch in one op, over the CPU device's
intra-op threads (each table row owned by one thread, so no row is written by two). It
makes the update of ``cflib.train.rowstep``'s TensorFlow step up to the order of float
sums (``tests/train/test_fused.py``).

The op is compiled against the installed TensorFlow's headers by the install step
(``make install`` runs ``python -m cflib.train.fused``) into ``build/`` here, under a
name that holds a hash of the source, TensorFlow's version and the compiler flags: a
library built for another TensorFlow or an older source is never loaded. Without it
(no C++ compiler, or installed without ``make``) training uses the TensorFlow row step
and says so once in its log.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cflib.logs import stage_logger

log = stage_logger("train")

HERE = Path(__file__).parent
#: The op's C++ sources (``mf_adagrad.cc``: the ops, ``svdpp.cc``: svdpp's N(u) work) and
#: their header; all of them are in the library's hash.
SOURCES = (HERE / "mf_adagrad.cc", HERE / "svdpp.cc")
HEADERS = (HERE / "fused.h",)
#: Where the install step puts the library (``library_path``): not a package, so that
#: walking cflib's modules does not take the library for an extension module.
BUILD_DIR = HERE / "build"
#: ``CFPIPE_FUSED_OP=0`` trains with the TensorFlow row step even where the op is built.
ENV_SWITCH = "CFPIPE_FUSED_OP"
#: ``-march=native``: the library is built on the machine that trains (its CPU's flags are
#: part of the name, ``library_path``); the reassociation flags let the compiler vectorize
#: the dot products (float sums in another order: the tests' tolerance covers it).
CXX_FLAGS = (
    "-O3", "-march=native", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
    "-fno-trapping-math", "-fPIC", "-shared", "-w",
)  # fmt: skip
#: Off where the CPU has it: with AVX512-FP16 (Sapphire Rapids and later) on,
#: ``-march=native`` makes the Eigen bundled with TensorFlow 2.21 fail to compile
#: (``PacketMathFP16.h``: "expected initializer before '<'"); the op uses no half floats.
NO_FP16 = "-mno-avx512fp16"


def _tf_flags() -> tuple[list[str], list[str], str]:
    import tensorflow as tf

    return tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags(), tf.__version__


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), which ``-march=native`` compiles for."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line for line in lines if line.startswith("flags")), "")


def cxx_flags(cpu_flags: str | None = None) -> tuple[str, ...]:
    """The compiler's flags for a CPU of these feature flags (default: this machine's):
    ``CXX_FLAGS``, and ``NO_FP16`` where the CPU has AVX512-FP16."""
    cpu = (_cpu_flags() if cpu_flags is None else cpu_flags).split()
    return (*CXX_FLAGS, NO_FP16) if "avx512_fp16" in cpu else CXX_FLAGS


def library_path(build_dir: Path = BUILD_DIR) -> Path:
    """The library's path for this source, TensorFlow and flags (it may not exist)."""
    compile_flags, link_flags, version = _tf_flags()
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (*SOURCES, *HEADERS)))
    digest.update("\0".join([version, *compile_flags, *link_flags, *cxx_flags()]).encode())
    digest.update(_cpu_flags().encode())
    return build_dir / f"_mf_adagrad_{digest.hexdigest()[:12]}.so"


def build(build_dir: Path = BUILD_DIR) -> Path:
    """Compile the op into ``build_dir`` (a no-op if this build is there); return its path.

    Raises:
        RuntimeError: no C++ compiler, or the compiler failed (its last lines).
    """
    target = library_path(build_dir)
    if target.is_file():
        return target
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++ or $CXX) to build the fused training op")
    compile_flags, link_flags, _ = _tf_flags()
    build_dir.mkdir(parents=True, exist_ok=True)
    # Compiled to a temporary name, then renamed: an interrupted build leaves no library.
    with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
        out = Path(tmp) / target.name
        sources = [str(p) for p in SOURCES]
        cmd = [cxx, *cxx_flags(), *compile_flags, *sources, "-o", str(out), *link_flags]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"building the fused op failed ({cxx}): {tail}")
        for stale in build_dir.glob("_mf_adagrad_*.so"):
            stale.unlink(missing_ok=True)
        out.replace(target)
    return target


@functools.cache
def load(build_dir: Path = BUILD_DIR) -> Any | None:
    """The op's module (``tf.load_op_library``), or None where it is not built, cannot
    load, or ``CFPIPE_FUSED_OP=0``; the reason is logged once."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        log.info("the fused training op is off (%s=0): the TensorFlow row step", ENV_SWITCH)
        return None
    import tensorflow as tf

    path = library_path(build_dir)
    if not path.is_file():
        log.info(
            "the fused training op is not built (`make install` builds it): training "
            "uses the TensorFlow row step"
        )
        return None
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as exc:
        log.warning("the fused training op did not load (%s): the TensorFlow row step", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m cflib.train.fused [BUILD_DIR]``: build the op; one line either way."""
    args = sys.argv[1:] if argv is None else argv
    build_dir = Path(args[0]) if args else BUILD_DIR
    try:
        path = build(build_dir)
    except RuntimeError as exc:
        print(f"note: {exc}; training will use the TensorFlow row step", file=sys.stderr)
        return 1
    print(f"fused training op: {path}")
    return 0
