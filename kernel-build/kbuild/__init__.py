"""Build pipeline for the msharefs guest kernels (see kernel-build/build)."""
