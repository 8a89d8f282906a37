import LowbitCore
import LowbitData

/// A graph's outputs against the float model's on a few calibration samples: the yardstick
/// for steps that are checked end to end (which activation quantizers matter, whether a bias
/// correction helped). The loss is `OutputLoss`'s: the divergence for logits, the mean square
/// otherwise, averaged over samples.
struct OutputComparison {
  /// The batches compared: the first ones holding at least `samples` samples.
  let batches: [[String: Tensor]]
  let sizes: [Int]
  /// Per batch, the float model's outputs.
  let targets: [[String: Tensor]]
  /// The float outputs compared, and whether each is logits.
  let outputs: [(name: String, logits: Bool)]

  init(float graph: Graph, batches all: FeedBatches, samples: Int) throws {
    let sizes = try all.sampleCounts(graph: graph)
    var count = 0, kept = 0
    while kept < all.count && count < samples {
      count += sizes[kept]
      kept += 1
    }
    batches = try all.prefix(kept).loaded()
    self.sizes = Array(sizes.prefix(kept))
    let reference = try Interpreter(graph)
    let targets = try batches.map { try reference.run($0) }
    self.targets = targets
    outputs = graph.outputs.map(\.name)
      .filter { name in targets.allSatisfy { $0[name]?.dtype.isFloatingPoint == true } }
      .map { name in (name, OutputLoss.isLogits(targets.map { $0[name]! })) }
  }

  /// `graph`'s loss against the float outputs, per sample.
  func loss(_ graph: Graph) throws -> Double { try measure(graph).loss }

  /// `graph`'s loss against the float outputs, per sample, the SQNR (dB) of all compared
  /// outputs together, `10 log10(sum t^2 / sum (y - t)^2)`, and the mean cosine similarity of
  /// each output row (along the last axis) with the float one (`Metrics.meanCosine`).
  func measure(_ graph: Graph) throws -> (loss: Double, sqnr: Double, cosine: Double) {
    let interpreter = try Interpreter(graph)
    var total = 0.0, sums = SQNRSums(), cosines = 0.0, rows = 0
    for (b, feeds) in batches.enumerated() {
      let result = try interpreter.run(feeds)
      for output in outputs {
        guard let y = result[output.name], let t = targets[b][output.name], y.shape == t.shape else { continue }
        total += OutputLoss.compare(y, t, logits: output.logits).loss * Double(sizes[b])
        sums.add(reference: t.floats, quantized: y.floats)
        let width = max(t.shape.last ?? 1, 1), count = t.count / width
        guard count > 0 else { continue }
        cosines += Metrics.meanCosine(reference: t.floats, quantized: y.floats, width: width) * Double(count)
        rows += count
      }
    }
    return (total / Double(max(sizes.reduce(0, +), 1)), sums.decibels, rows == 0 ? 1 : cosines / Double(rows))
  }
}
