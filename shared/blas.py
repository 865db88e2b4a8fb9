"""The environment variables BLAS builds read for their thread count (OpenMP, OpenBLAS, MKL,
Accelerate, numexpr): the one list every process that sets its BLAS threads uses. They must be
set before NumPy is imported; threadpoolctl adjusts a process that already imported it."""

BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
