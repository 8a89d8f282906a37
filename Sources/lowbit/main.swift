import LowbitCLI

#if os(Linux)
  /// glibc's `int mallopt(int param, int value)` (malloc.h, which the Glibc module leaves out).
  @_silgen_name("mallopt") func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
  let trimThreshold: Int32 = -1, mmapThreshold: Int32 = -3  // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD

  // Keep freed buffers in the heap instead of handing them back to the kernel: the interpreter
  // and the training engine allocate and free the same large tensors every step, and glibc's
  // defaults (mmap above a sliding threshold, trim above 128 KiB) made the kernel zero fresh
  // pages for each of them (15% of a block-reconstruction run in `perf`).
  _ = mallopt(mmapThreshold, 512 << 20)
  _ = mallopt(trimThreshold, 1 << 30)
#endif

Lowbit.main()
