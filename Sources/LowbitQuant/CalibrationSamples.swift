import LowbitCore
import LowbitData
import LowbitTrain

/// Items (samples or rows) spread over calibration batches, addressed by one global index:
/// batch `b` holds items `first[b] ..< first[b + 1]`.
struct CalibrationSamples: Sendable {
  /// The global index of each batch's first item, and the total count at the end.
  let first: [Int]

  init(sizes: [Int]) {
    var first = [0]
    for n in sizes { first.append(first.last! + n) }
    self.first = first
  }

  var count: Int { first.last! }

  /// Samples per batch: the leading dimension of each batch's feed for the graph's first input.
  static func batchSizes(_ batches: [[String: Tensor]], graph: Graph) throws -> [Int] {
    try FeedBatches(batches).sampleCounts(graph: graph)
  }

  /// The batch holding global item `global` and the item's index in it.
  func locate(_ global: Int) -> (batch: Int, index: Int) {
    var b = 0
    while first[b + 1] <= global { b += 1 }
    return (b, global - first[b])
  }

  /// `count` items drawn uniformly with replacement.
  func draw(_ count: Int, _ generator: inout SplitMix64) -> [(batch: Int, index: Int)] {
    (0..<count).map { _ in locate(generator.uniform(below: self.count)) }
  }

  /// The drawn samples of a value given per batch (first axis: samples), stacked in draw order;
  /// integer and boolean values (token ids, masks) keep their type.
  static func gather(_ perBatch: [Tensor], _ picks: [(batch: Int, index: Int)]) -> Tensor {
    let first = perBatch[0]
    let row = first.count / max(first.shape[0], 1)
    let shape = [picks.count] + first.shape.dropFirst()
    func stack<T>(_ values: (Tensor) -> [T], zero: T) -> [T] {
      var out = [T](repeating: zero, count: picks.count * row)
      out.withUnsafeMutableBufferPointer { dst in
        for (k, pick) in picks.enumerated() {
          values(perBatch[pick.batch]).withUnsafeBufferPointer { src in
            (dst.baseAddress! + k * row).update(from: src.baseAddress! + pick.index * row, count: row)
          }
        }
      }
      return out
    }
    switch first.storage {
    case .float: return Tensor(dtype: first.dtype, shape: shape, storage: .float(stack({ $0.floats }, zero: 0)))
    case .int: return Tensor(dtype: first.dtype, shape: shape, storage: .int(stack({ $0.ints }, zero: 0)))
    case .bool: return Tensor(dtype: first.dtype, shape: shape, storage: .bool(stack({ $0.bools }, zero: false)))
    }
  }
}
