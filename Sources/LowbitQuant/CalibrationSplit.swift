import LowbitCore

/// Calibration batches split in two: the steps that fit something to data (AdaRound, block
/// reconstruction, empirical bias correction, quantizer tuning) fit on `fitting`, and the
/// end-to-end checks that decide whether each of them stays compare the candidates on `heldOut`,
/// rows those steps never saw, against the original float model's outputs. Range setting and the
/// float transforms' statistics use every batch.
struct CalibrationSplit {
  var fitting: [[String: Tensor]]
  var heldOut: [[String: Tensor]]
  /// False when there were too few batches to hold any out (the checks then reuse `fitting`).
  var isHeldOut: Bool

  /// The trailing batches holding at least `fraction` of the samples are held out, when at least
  /// two batches remain before them.
  init(_ batches: [[String: Tensor]], graph: Graph, fraction: Double = 0.125) throws {
    let sizes = try CalibrationSamples.batchSizes(batches, graph: graph)
    let wanted = Int((Double(sizes.reduce(0, +)) * fraction).rounded(.up))
    var held = 0, count = 0
    while held < batches.count && count < wanted {
      count += sizes[batches.count - 1 - held]
      held += 1
    }
    if batches.count - held >= 2 && held >= 1 {
      fitting = Array(batches.prefix(batches.count - held))
      heldOut = Array(batches.suffix(held))
      isHeldOut = true
    } else {
      fitting = batches
      heldOut = batches
      isHeldOut = false
    }
  }
}
