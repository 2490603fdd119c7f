"""Build the C++/pybind11 kernels of minivec2vec (metadata lives in pyproject.toml)."""
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

# Portable flags only: no -march=native, so a built wheel runs on any x86-64 / aarch64 machine.
ext_modules = [
    Pybind11Extension(
        "minivec2vec._core",
        sources=sorted(["csrc/bindings.cpp"]),
        include_dirs=["csrc"],
        depends=["csrc/topk.hpp", "csrc/knn_int8.hpp", "csrc/knn_int8_avx2.hpp", "csrc/rows_times.hpp",
                 "csrc/assignment.hpp"],
        cxx_std=17,
        # -ffp-contract=off: the compiler fuses no multiply-add on its own (rows_times.hpp
        # decides where fused multiply-adds are used, so its sums round the same everywhere)
        extra_compile_args=["-O3", "-fvisibility=hidden", "-ffp-contract=off"],
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
