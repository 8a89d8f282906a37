import Dispatch
import Synchronization

/// How many worker threads kernels use: the machine's active processors unless a caller (the
/// CLI, from `LOWBIT_THREADS` or an MPI launch) sets another number. The library reads no
/// environment variable itself.
public enum KernelThreads {
  private static let chosen = Atomic<Int>(0)

  /// The machine's active processors.
  public static let processors: Int = {
    #if canImport(Glibc)
      return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    #else
      return 1
    #endif
  }()

  /// The number in use: the one set, else `processors`.
  public static var count: Int {
    let n = chosen.load(ordering: .relaxed)
    return n > 0 ? n : processors
  }

  /// Sets the number of worker threads, clamped to 1...256.
  public static func set(_ n: Int) { chosen.store(min(max(n, 1), 256), ordering: .relaxed) }
}

/// Number of worker threads used by kernels (`KernelThreads.count`).
public var kernelThreadCount: Int { KernelThreads.count }

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `body(range)` over `0..<count` split into contiguous chunks, in parallel when the work is
/// large enough (`count * costPerItem` above about 32k operations). Chunks may run at the same
/// time, so `body` captures only Sendable values (memory through `SharedBuffer`).
@inlinable
public func parallelChunks(_ count: Int, costPerItem: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
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

/// `[f(0), f(1), ..., f(count - 1)]`, the items computed in parallel chunks (`parallelChunks`);
/// each item is computed exactly as a serial map would.
public func parallelIndexedMap<T: Sendable>(_ count: Int, costPerItem: Int = 1, _ f: @Sendable (Int) -> T) -> [T] {
  guard count > 0 else { return [] }
  return SharedBuffer<T>.array(count: count) { out in
    // Each chunk initializes its own indices.
    parallelChunks(count, costPerItem: costPerItem) { chunk in
      for k in chunk { out.initialize(k, to: f(k)) }
    }
  }
}
