import CMPI
import LowbitCore
import LowbitTrain

#if canImport(Glibc)
  import Glibc
#endif

/// `Collective` over MPI's `MPI_COMM_WORLD`: one rank per process started by `mpirun` (Debian's
/// OpenMPI), on one machine or across machines (`mpirun --hostfile`).
///
/// MPI is initialized once per process, by the first `shared()`, and must be ended by
/// `finalize()` after the last collective call (or by `abort(exitCode:)` when a rank fails:
/// the other ranks may be waiting in a collective call and would wait forever). Calls must come
/// from one thread at a time (MPI is initialized without thread support beyond that).
///
/// Reductions are `MPI_Allreduce` with `MPI_SUM`, `MPI_MIN` or `MPI_MAX`: OpenMPI's algorithms
/// combine each element once and share the result, or combine in an order that is the same on
/// every rank, so all ranks receive the same bits, as `Collective` requires.
public final class MPICollective: Collective, @unchecked Sendable {
  public let rank: Int
  public let size: Int

  private init() throws {
    try Self.check(lowbit_mpi_init(), "MPI_Init")
    var rank: Int32 = 0, size: Int32 = 0
    try Self.check(lowbit_mpi_rank(&rank), "MPI_Comm_rank")
    try Self.check(lowbit_mpi_size(&size), "MPI_Comm_size")
    self.rank = Int(rank)
    self.size = Int(size)
  }

  private static let instance = Result { try MPICollective() }

  /// The process's collective; the first call runs `MPI_Init` (and throws if it fails, e.g.
  /// when the process was not started by an MPI launcher that can serve it).
  public static func shared() throws -> MPICollective { try instance.get() }

  /// Whether `MPI_Init` has run and `MPI_Finalize` has not.
  public static var isActive: Bool { lowbit_mpi_initialized() != 0 && lowbit_mpi_finalized() == 0 }

  /// Ends MPI for this process (`MPI_Finalize`); no collective call may follow. Does nothing
  /// when MPI is not active.
  public static func finalize() throws {
    guard isActive else { return }
    try check(lowbit_mpi_finalize(), "MPI_Finalize")
  }

  /// Ends every rank of the job (`MPI_Abort`) with `exitCode`; used when this rank failed and
  /// the others could be waiting for it. Exits this process when MPI is not active.
  public static func abort(exitCode: Int32) -> Never {
    if isActive { _ = lowbit_mpi_abort(exitCode) }
    exit(exitCode)
  }

  public func allreduce(_ values: inout [Float], _ operation: ReduceOperation) throws {
    try Self.inChunks(&values) { pointer, count in lowbit_mpi_allreduce_float(pointer, count, Self.code(operation)) }
  }

  public func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {
    try Self.inChunks(&values) { pointer, count in lowbit_mpi_allreduce_double(pointer, count, Self.code(operation)) }
  }

  /// Sends the length first (`MPI_Bcast` of one UInt64), then the bytes, so receivers need not
  /// know it.
  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    guard (0..<size).contains(root) else {
      throw LowbitError.invalidArgument("broadcast root \(root) is not a rank (0..<\(size))")
    }
    var length = CUnsignedLongLong(bytes.count)
    try Self.check(lowbit_mpi_bcast_uint64(&length, Int32(root)), "MPI_Bcast")
    if rank != root { bytes = [UInt8](repeating: 0, count: Int(length)) }
    try Self.inChunks(&bytes) { pointer, count in lowbit_mpi_bcast_bytes(pointer, count, Int32(root)) }
  }

  public func barrier() throws { try Self.check(lowbit_mpi_barrier(), "MPI_Barrier") }

  static func code(_ operation: ReduceOperation) -> Int32 {
    switch operation {
    case .sum: return 0
    case .minimum: return 1
    case .maximum: return 2
    }
  }

  /// Runs `call` over consecutive chunks of at most `Int32.max` elements (MPI counts are `int`).
  static func inChunks<T>(_ values: inout [T], _ call: (UnsafeMutablePointer<T>, Int32) -> Int32) throws {
    let chunk = Int(Int32.max)
    try values.withUnsafeMutableBufferPointer { buffer in
      // Safety: every pointer handed to MPI stays within `buffer`, which lives for the call.
      guard let base = buffer.baseAddress else { return }
      for start in stride(from: 0, to: buffer.count, by: chunk) {
        try check(call(base + start, Int32(min(chunk, buffer.count - start))), "MPI collective")
      }
    }
  }

  /// Throws `LowbitError.io` with MPI's message unless `code` is `MPI_SUCCESS` (0).
  static func check(_ code: Int32, _ call: String) throws {
    guard code != 0 else { return }
    var text = [CChar](repeating: 0, count: 512)
    lowbit_mpi_error_string(code, &text, Int32(text.count))
    throw LowbitError.io("\(call) failed: \(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) (MPI error \(code))")
  }
}
