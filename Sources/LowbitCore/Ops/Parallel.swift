import Dispatch

/// Number of worker threads used by kernels: `LOWBIT_THREADS` when set to a positive number,
/// else the machine's active processors.
public let kernelThreadCount: Int = {
  #if canImport(Glibc)
    if let text = getenv("LOWBIT_THREADS"), let n = Int(String(cString: text)), n > 0 {
      return min(n, 256)
    }
    return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
  #else
    return 1
  #endif
}()

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `body(range)` over `0..<count` split into contiguous chunks, in parallel when the work is
/// large enough (`count * costPerItem` above about 32k operations).
@inlinable
public func parallelChunks(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
  if count <= 0 { return }
  let threads = kernelThreadCount
  if threads == 1 || count == 1 || count * max(costPerItem, 1) < 32_768 {
    body(0..<count)
    return
  }
  let chunks = min(count, threads * 4)
  DispatchQueue.concurrentPerform(iterations: chunks) { c in
    let start = count * c / chunks
    let end = count * (c + 1) / chunks
    if start < end { body(start..<end) }
  }
}
