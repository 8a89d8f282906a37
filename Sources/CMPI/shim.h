// OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros that Swift
// cannot import, so the few calls lowbit makes are wrapped here, always on MPI_COMM_WORLD.
// Every wrapper returns MPI's error code (MPI_SUCCESS = 0); lowbit_mpi_init makes errors return
// instead of aborting, so Swift can turn them into thrown errors.
#include <mpi.h>

/// The reduction lowbit_mpi_allreduce_* applies: 0 sum, 1 minimum, 2 maximum.
static inline MPI_Op lowbit_mpi_op(int op) {
  return op == 1 ? MPI_MIN : op == 2 ? MPI_MAX : MPI_SUM;
}

static inline int lowbit_mpi_initialized(void) {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag;
}

static inline int lowbit_mpi_finalized(void) {
  int flag = 0;
  MPI_Finalized(&flag);
  return flag;
}

/// MPI_Init, then errors on MPI_COMM_WORLD return codes instead of aborting.
static inline int lowbit_mpi_init(void) {
  int rc = MPI_Init(NULL, NULL);
  if (rc != MPI_SUCCESS) return rc;
  return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

static inline int lowbit_mpi_finalize(void) { return MPI_Finalize(); }

static inline int lowbit_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

static inline int lowbit_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }

static inline int lowbit_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

static inline int lowbit_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

/// In-place allreduce of `count` floats.
static inline int lowbit_mpi_allreduce_float(float *values, int count, int op) {
  return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, lowbit_mpi_op(op), MPI_COMM_WORLD);
}

/// In-place allreduce of `count` doubles.
static inline int lowbit_mpi_allreduce_double(double *values, int count, int op) {
  return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, lowbit_mpi_op(op), MPI_COMM_WORLD);
}

/// Broadcast of `count` bytes from `root`.
static inline int lowbit_mpi_bcast_bytes(void *bytes, int count, int root) {
  return MPI_Bcast(bytes, count, MPI_BYTE, root, MPI_COMM_WORLD);
}

/// Broadcast of one 64-bit unsigned integer from `root`.
static inline int lowbit_mpi_bcast_uint64(unsigned long long *value, int root) {
  return MPI_Bcast(value, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD);
}

/// Writes MPI's message for `code` (NUL-terminated) into `text` of `capacity` bytes.
static inline void lowbit_mpi_error_string(int code, char *text, int capacity) {
  char buffer[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, buffer, &length) != MPI_SUCCESS) length = 0;
  if (capacity <= 0) return;
  if (length >= capacity) length = capacity - 1;
  for (int i = 0; i < length; i++) text[i] = buffer[i];
  text[length] = 0;
}
