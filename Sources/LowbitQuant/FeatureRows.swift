import LowbitCore
import LowbitData

/// The feature rows a calibration pass sees at a linear layer's input `[..., K]`: every row of
/// `K` values, without the token positions a mask input marks as padding (a transformer's
/// `attention_mask` `[N, L]` is 0 there, and the model's outputs ignore those positions).
struct FeatureRows {
  /// Per `(n, l)` of the mask, whether the row is kept; nil keeps every row.
  var kept: [Bool]?
  var maskShape: [Int]?

  /// `name` when `graph` has a model input of that name (the mask), else nil: nothing is left out.
  static func maskInput(_ name: String, of graph: Graph) -> String? {
    graph.inputs.contains { $0.name == name } ? name : nil
  }

  /// The rows `feeds[mask]` keeps (every row when the model has no such rank-2 input).
  init(feeds: [String: Tensor], mask: String?) {
    let m = mask.flatMap { feeds[$0] }.flatMap { $0.rank == 2 ? $0 : nil }
    kept = m?.asFloats().map { $0 != 0 }
    maskShape = m?.shape
  }

  /// The kept rows of `t` (`[rows, K]` row-major): a value `[N, L, K]` whose first two axes are
  /// the mask's loses the positions where it is 0; any other value keeps all its rows.
  func rows(_ t: Tensor, features k: Int) -> [Float] {
    let values = t.floats
    guard let kept, t.rank == 3, Array(t.shape.prefix(2)) == maskShape else { return values }
    return kept.indices.filter { kept[$0] }.flatMap { r in values[(r * k)..<(r * k + k)] }
  }

  /// `t` without its padding rows, as `[rows, K]`, when it is `[N, L, K]` over the mask's
  /// `[N, L]`; else `t` itself.
  func keptTensor(_ t: Tensor) -> Tensor {
    guard kept != nil, t.rank == 3, Array(t.shape.prefix(2)) == maskShape, t.dtype.isFloatingPoint else { return t }
    let k = t.shape[2], rows = rows(t, features: k)
    return Tensor(shape: [rows.count / max(k, 1), k], floats: rows)
  }
}

extension FeatureRows {
  /// Runs the float model `graph` over `batches` and hands `take` the kept rows (`[rows, K]`
  /// row-major, padding left out by `mask`) of each of `inputs` (name to `K`) on every batch, in
  /// a fixed order (model inputs by name, then graph order); `batchDone` after each batch. A value
  /// that is not `K` float features on its last axis throws, naming `step`.
  static func observe(
    _ graph: Graph, inputs: [String: Int], batches: FeedBatches, mask: String?, step: String,
    take: (_ name: String, _ rows: [Float], _ k: Int) -> Void, batchDone: () -> Void = {}
  ) throws {
    try withoutActuallyEscaping(take) { take in try observe(graph, inputs: inputs, batches: batches, mask: mask, step: step, escaping: take, batchDone: batchDone) }
  }

  private static func observe(
    _ graph: Graph, inputs: [String: Int], batches: FeedBatches, mask: String?, step: String,
    escaping take: @escaping (String, [Float], Int) -> Void, batchDone: () -> Void
  ) throws {
    let producers = graph.producers()
    let interpreter = try Interpreter(graph, fuseActivations: false)
    for b in batches.indices {
      let feeds = try batches.batch(b)
      let kept = FeatureRows(feeds: feeds, mask: mask)
      var failure: Error?
      func record(_ name: String, _ t: Tensor) {
        guard let k = inputs[name], failure == nil else { return }
        guard t.dtype.isFloatingPoint, t.shape.last == k else {
          let message = "\(step): input '\(name)' has shape \(t.shape) (\(t.dtype)), the weight needs \(k) float features on its last axis"
          failure = producers[name].map { graph.nodes[$0].error(.invalidInput, message) } ?? LowbitError.invalidInput(message)
          return
        }
        take(name, kept.rows(t, features: k), k)
      }
      for (name, t) in feeds.sorted(by: { $0.key < $1.key }) { record(name, t) }
      _ = try interpreter.run(feeds, observe: { node, results in
        for (name, t) in zip(node.outputs, results) { record(name, t) }
      })
      if let failure { throw failure }
      batchDone()
    }
  }
}
