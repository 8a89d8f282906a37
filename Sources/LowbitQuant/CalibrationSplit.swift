import LowbitCore
import LowbitData
import LowbitTrain

/// Calibration batches split in two: the steps that fit something to data (AdaRound, block
/// reconstruction, empirical bias correction, quantizer tuning) fit on `fitting`, and the
/// end-to-end checks that decide whether each of them stays compare the candidates on `heldOut`,
/// rows those steps never saw, against the original float model's outputs. Range setting and the
/// float transforms' statistics use every batch.
struct CalibrationSplit {
  var fitting: FeedBatches
  var heldOut: FeedBatches
  /// False when there were too few batches to hold any out (the checks then reuse `fitting`).
  var isHeldOut: Bool

  /// The trailing batches holding at least `fraction` of the samples are held out, when at least
  /// two batches remain before them.
  init(_ batches: FeedBatches, graph: Graph, fraction: Double = 0.125) throws {
    let sizes = try batches.sampleCounts(graph: graph)
    let wanted = Int((Double(sizes.reduce(0, +)) * fraction).rounded(.up))
    var held = 0, count = 0
    while held < batches.count && count < wanted {
      count += sizes[batches.count - 1 - held]
      held += 1
    }
    if batches.count - held >= 2 && held >= 1 {
      fitting = batches.prefix(batches.count - held)
      heldOut = batches.suffix(held)
      isHeldOut = true
    } else {
      fitting = batches
      heldOut = batches
      isHeldOut = false
    }
  }

  /// `n` of the fitting batches for the steps that hold their batches in memory: all when they
  /// fit, else a seeded sample spread over the whole set (in their order), so the last images
  /// count as much as the first.
  func fittingSample(_ n: Int, seed: UInt64) -> FeedBatches {
    guard n < fitting.count else { return fitting }
    var generator = SplitMix64.stream(0x6669_7474, of: seed)
    var order = Array(fitting.indices)
    for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, generator.uniform(below: i + 1)) }
    return fitting.picking(order.prefix(max(n, 1)).sorted())
  }
}
