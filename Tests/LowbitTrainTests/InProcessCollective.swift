import Foundation
import LowbitCore
import LowbitTrain

/// K ranks as K threads of one process, for testing data-parallel code without MPI: every
/// collective call waits until all ranks made it; reductions combine in rank order, so every rank
/// gets the same bits.
final class InProcessGroup: @unchecked Sendable {
  let size: Int
  private let condition = NSCondition()
  private var slots: [Any?]
  private var arrived = 0, generation = 0
  private var combined: Any?

  init(size: Int) {
    self.size = size
    slots = Array(repeating: nil, count: size)
  }

  /// Deposits `value` for `rank`, waits for every rank, returns `combine(all values in rank order)`.
  func exchange<T>(_ rank: Int, _ value: T, combine: ([T]) -> T) -> T {
    condition.lock()
    defer { condition.unlock() }
    let round = generation
    slots[rank] = value
    arrived += 1
    if arrived == size {
      combined = combine(slots.map { $0 as! T })
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      while generation == round { condition.wait() }
    }
    return combined as! T
  }

  /// Runs `body(collective)` on `size` threads, one per rank, and returns the results by rank.
  func run<R>(_ body: @escaping @Sendable (InProcessCollective) throws -> R) throws -> [R] {
    let box = ResultBox<R>(count: size)
    let done = DispatchGroup()
    let lock = NSLock()
    for rank in 0..<size {
      done.enter()
      let thread = Thread { [self] in
        let r = Result { try body(InProcessCollective(group: self, rank: rank)) }
        lock.lock()
        box.results[rank] = r
        lock.unlock()
        done.leave()
      }
      thread.stackSize = 8 << 20
      thread.start()
    }
    done.wait()
    return try box.results.map { try $0!.get() }
  }
}

struct InProcessCollective: Collective {
  let group: InProcessGroup
  let rank: Int
  var size: Int { group.size }

  func allreduce(_ values: inout [Float], _ operation: ReduceOperation) throws {
    values = group.exchange(rank, values) { Self.reduce($0, operation) }
  }

  func allreduce(_ values: inout [Double], _ operation: ReduceOperation) throws {
    values = group.exchange(rank, values) { Self.reduce($0, operation) }
  }

  static func reduce<T: FloatingPoint>(_ all: [[T]], _ operation: ReduceOperation) -> [T] {
    precondition(Set(all.map(\.count)).count == 1, "ranks reduce buffers of different lengths")
    return all.dropFirst().reduce(all[0]) { a, b in
      zip(a, b).map { x, y in
        switch operation {
        case .sum: return x + y
        case .minimum: return Swift.min(x, y)
        case .maximum: return Swift.max(x, y)
        }
      }
    }
  }

  func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    let mine = bytes
    bytes = group.exchange(rank, mine) { $0[root] }
  }

  func barrier() throws { _ = group.exchange(rank, 0) { _ in 0 } }
}

/// Results written by the rank threads under a lock.
private final class ResultBox<R>: @unchecked Sendable {
  var results: [Result<R, Error>?]
  init(count: Int) { results = Array(repeating: nil, count: count) }
}
