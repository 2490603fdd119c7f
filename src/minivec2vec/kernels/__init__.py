"""The compiled building blocks: exact kNN, k-means, Procrustes, the partial states of the
method, the Numba kernels (the C++ ones are ``minivec2vec._core``, built from csrc/) and the
row preparation every map shares."""
