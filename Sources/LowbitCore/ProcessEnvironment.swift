/// The process environment lowbit's kernels are built to run under. C libraries read these
/// variables once, when they load, so the `lowbit` command sets them at startup and re-executes
/// itself, and `make test` starts the test processes with the same values (checked by a test).
///
/// - `OPENBLAS_NUM_THREADS=1`: lowbit parallelizes around single-threaded sgemm calls; OpenBLAS's
///   own pool threads would otherwise spin in sched_yield on the same cores (about a fifth of the
///   CPU time at batch 32).
/// - `GLIBC_TUNABLES`: every batch allocates and frees tensors of the same few sizes (megabytes
///   each in training). glibc's defaults serve those from fresh mmap'd pages or trim them off the
///   heap when freed, so each batch pays page faults and kernel zero-fills again (about a quarter
///   of `lowbit train`'s time on fm_resnet20). Blocks up to 32 MiB (glibc's largest threshold)
///   come from the heap, which is trimmed only above 1 GiB free: training ran 1.3-1.5x faster,
///   inference is unchanged, and the process keeps up to 1 GiB it no longer uses until it exits.
public enum ProcessEnvironment {
  public static let settings: [(name: String, value: String)] = [
    ("OPENBLAS_NUM_THREADS", "1"),
    ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"),
  ]
}
