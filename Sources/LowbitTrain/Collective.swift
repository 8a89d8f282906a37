import LowbitCore

/// The element-wise reduction of `Collective.allreduce`.
public enum ReduceOperation: String, Sendable, CaseIterable {
  case sum, minimum, maximum
}

/// The processes ("ranks") that train one model together by data parallelism, and the few
/// collective operations that keep them in step. Every rank calls the same operations in the same
/// order with buffers of the same length; each call returns when every rank has made it.
///
/// Implementations: `SingleProcess` (one rank; every operation leaves its buffer as it is) and
/// `MPICollective` in `LowbitDistributed` (MPI over `MPI_COMM_WORLD`, one rank per process under
/// `mpirun`). This protocol knows nothing of MPI, so training code and its tests need no MPI.
///
/// Contract: after `allreduce` every rank holds the same bits (the reduction is done once per
/// element and the result shared, or done in the same order everywhere), so ranks that start
/// from identical parameters and apply identical updates stay identical.
public protocol Collective: Sendable {
  /// This process's rank, `0..<size`; rank 0 is the root that reads shared input and writes output.
  var rank: Int { get }
  /// The number of ranks.
  var size: Int { get }
  /// Replaces `values` on every rank by the element-wise reduction over all ranks' `values`.
  func allreduce(_ values: inout [Float], _ operation: ReduceOperation) throws
  /// Replaces `values` on every rank by the element-wise reduction over all ranks' `values`.
  func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws
  /// Replaces `bytes` on every rank but `root` by `root`'s bytes (of any length).
  func broadcast(_ bytes: inout [UInt8], root: Int) throws
  /// Returns when every rank has called it.
  func barrier() throws
}

extension Collective {
  /// Whether this is rank 0, the rank that prints and writes files.
  public var isRoot: Bool { rank == 0 }

  /// Element-wise sum over all ranks (`allreduce(_:_:)` with `.sum`).
  public func allreduceSum(_ values: inout [Float]) throws { try allreduce(&values, .sum) }

  /// Element-wise sum over all ranks (`allreduce(_:_:)` with `.sum`).
  public func allreduceSum(_ values: inout [Double]) throws { try allreduce(&values, .sum) }

  /// The contiguous part of `0..<count` this rank takes when `count` items are split over the
  /// ranks as evenly as possible: `count * rank / size ..< count * (rank + 1) / size`.
  public func share(of count: Int) -> Range<Int> {
    (count * rank / size)..<(count * (rank + 1) / size)
  }
}

/// The collective of a process that trains alone: rank 0 of 1; reductions and broadcasts leave
/// their buffers unchanged.
public struct SingleProcess: Collective {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func allreduce(_ values: inout [Float], _ operation: ReduceOperation) throws {}
  public func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {}
  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    guard root == 0 else { throw LowbitError.invalidArgument("broadcast root \(root) is not a rank (one rank: 0)") }
  }
  public func barrier() throws {}
}
