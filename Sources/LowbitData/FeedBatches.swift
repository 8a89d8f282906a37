import LowbitCore

/// A model's feeds in batches, each read when a pass asks for it: from a data set (its rows are
/// read from their files and bound to the graph's inputs every time, so a pass over a set larger
/// than memory holds one batch) or from feeds already in memory.
public struct FeedBatches: Sendable, ExpressibleByArrayLiteral {
  enum Source: Sendable {
    case memory([[String: Tensor]])
    case dataset(Dataset, graph: Graph, ranges: [Range<Int>])
  }
  let source: Source

  /// Feeds held in memory.
  public init(_ feeds: [[String: Tensor]]) { source = .memory(feeds) }

  public init(arrayLiteral feeds: [String: Tensor]...) { self.init(feeds) }

  /// `data`'s first `limit` samples (all by default) in batches of `batchSize`, bound to `graph`'s
  /// inputs; the first batch is bound here, so a data set that does not fit the graph fails now.
  public init(_ data: Dataset, graph: Graph, batchSize: Int, limit: Int? = nil) throws {
    let d = limit.map { data.prefix(min($0, data.count)) } ?? data
    source = .dataset(d, graph: graph, ranges: d.batches(size: batchSize))
    _ = try first()
  }

  private init(_ source: Source) { self.source = source }

  public var count: Int {
    switch source {
    case .memory(let f): return f.count
    case .dataset(_, _, let r): return r.count
    }
  }
  public var isEmpty: Bool { count == 0 }
  public var indices: Range<Int> { 0..<count }

  /// Batch `i` (within `indices`).
  public func batch(_ i: Int) throws -> [String: Tensor] {
    switch source {
    case .memory(let f): return f[i]
    case .dataset(let d, let graph, let r): return try d.feeds(for: graph, batch: r[i])
    }
  }

  /// The first batch, or nil when there is none.
  public func first() throws -> [String: Tensor]? { isEmpty ? nil : try batch(0) }

  /// Calls `body` with each batch in order.
  public func forEach(_ body: ([String: Tensor]) throws -> Void) throws {
    for i in indices { try body(try batch(i)) }
  }

  /// Every batch in memory: for the steps that revisit a bounded set of batches many times.
  public func loaded() throws -> [[String: Tensor]] {
    if case .memory(let f) = source { return f }
    return try indices.map { try batch($0) }
  }

  /// The batches at `picked` (indices within `indices`), in that order.
  public func picking(_ picked: [Int]) -> FeedBatches {
    switch source {
    case .memory(let f): return FeedBatches(.memory(picked.map { f[$0] }))
    case .dataset(let d, let graph, let r): return FeedBatches(.dataset(d, graph: graph, ranges: picked.map { r[$0] }))
    }
  }

  /// The first `n` batches.
  public func prefix(_ n: Int) -> FeedBatches { picking(Array(indices.prefix(n))) }
  /// The last `n` batches.
  public func suffix(_ n: Int) -> FeedBatches { picking(Array(indices.suffix(n))) }

  /// Samples per batch: the data set's batch sizes, or for feeds in memory the leading dimension
  /// of each batch's feed for `graph`'s first input.
  public func sampleCounts(graph: Graph) throws -> [Int] {
    switch source {
    case .dataset(_, _, let r):
      return r.map(\.count)
    case .memory(let f):
      let input = graph.inputs.first?.name ?? ""
      return try f.map { feeds in
        guard let n = feeds[input]?.shape.first else {
          throw LowbitError.invalidInput("calibration data has no input '\(input)'")
        }
        return n
      }
    }
  }
}
