import LowbitCore

/// Per-channel statistics of one value over calibration samples (channels on axis 1).
public struct ChannelMoments: Sendable, Equatable {
  /// `E[x_c^2]` per channel.
  var meanSquare: [Double]
  /// `max |x_c|` per channel.
  var maximum: [Float]

  /// The statistics of `x / t_c` per channel.
  func scaled(by t: [Float]) -> ChannelMoments {
    guard t.count == maximum.count else { return self }
    return ChannelMoments(meanSquare: zip(meanSquare, t).map { $0 / Double($1 * $1) },
                          maximum: zip(maximum, t).map { $0 / $1 })
  }

  /// Statistics of every value in `values` over `batches`, by value name.
  public static func gather(_ graph: Graph, values: Set<String>, batches: [[String: Tensor]]) throws -> [String: ChannelMoments] {
    var sums: [String: (squares: [Double], maximum: [Float], count: Int)] = [:]
    func add(_ name: String, _ t: Tensor) {
      guard values.contains(name), t.dtype.isFloatingPoint, t.rank >= 2 else { return }
      let n = t.shape[0], ch = t.shape[1], plane = t.count / max(n * ch, 1)
      var entry = sums[name] ?? ([Double](repeating: 0, count: ch), [Float](repeating: 0, count: ch), 0)
      guard entry.squares.count == ch else { return }
      let v = t.floats
      for i in 0..<n {
        for c in 0..<ch {
          let start = (i * ch + c) * plane
          var s: Double = 0, m = entry.maximum[c]
          for j in start..<(start + plane) {
            s += Double(v[j] * v[j])
            m = max(m, abs(v[j]))
          }
          entry.squares[c] += s
          entry.maximum[c] = m
        }
      }
      entry.count += n * plane
      sums[name] = entry
    }
    let interpreter = try Interpreter(graph, fuseActivations: false)
    for feeds in batches {
      for (name, t) in feeds { add(name, t) }
      _ = try interpreter.run(feeds, observe: { node, results in
        for (name, t) in zip(node.outputs, results) { add(name, t) }
      })
    }
    return sums.mapValues { e in ChannelMoments(meanSquare: e.squares.map { $0 / Double(max(e.count, 1)) }, maximum: e.maximum) }
  }
}

/// The quantizers around an equalized pair that its scales are chosen for.
public struct EqualizationTarget: Sendable, Equatable {
  public var weightBits: Int
  public var activationBits: Int
  public var perChannel: Bool
  /// The weights' rounding noise as a fraction of round-to-nearest's `Delta^2 / 12`: 1, or
  /// `learnedRoundingNoise` when AdaRound learns the rounding afterwards.
  public var weightNoiseFactor: Double

  /// The share of round-to-nearest's noise the weights are modelled to keep under AdaRound.
  /// AdaRound cancels most of it at the layer outputs (on EfficientNet-Lite2 its end-to-end check
  /// measures the output loss of learned rounding 9x (W8) to 34x (W4) below nearest's), so scales
  /// chosen for nearest rounding overpay in activation noise for weight noise that AdaRound
  /// removes anyway. Chosen among 1, 0.1, 0.03, 0.01 and 0.001 on that model's W8A8 per-tensor
  /// fidelity on held-out photos (docs/ptq-pipeline.md).
  public static let learnedRoundingNoise = 0.01

  public init(weightBits: Int, activationBits: Int, perChannel: Bool, weightNoiseFactor: Double = 1) {
    self.weightBits = weightBits
    self.activationBits = activationBits
    self.perChannel = perChannel
    self.weightNoiseFactor = weightNoiseFactor
  }
}

/// The expected quantization noise at the output of a pair `layer1 -> f -> layer2` as a function
/// of the equalization scales `s_i` (activation-aware cross-layer equalization).
///
/// Output channel i of layer 1 is divided by `s_i`, so are its activations `a_i`, and layer 2's
/// input channel i is multiplied by it. Each quantizer adds rounding noise of variance
/// `Delta^2 / 12` with `Delta` its step; summed over layer 2's outputs (the factor 1/12 dropped):
///
///     E(s) = sum_i s_i^2 N_i (rho Delta_1i^2 P_i + Delta_a^2) + rho sum_o Delta_2o^2 sum_{i read by o} T E[a_i^2] / s_i^2
///
/// with `rho` the weights' share of nearest rounding's noise (`EqualizationTarget.weightNoiseFactor`),
/// `N_i = ||W2[:, i]||^2`, `P_i = E ||x_patch(i)||^2` the energy of layer 1's input patch for
/// channel i, `T` layer 2's taps, `Delta_1i = 2 max(r1 / s) / (2^b - 2)` (per tensor) or
/// `2 r1_i / s_i / (2^b - 2)` (per channel), `Delta_a = max_i(amax_i / s_i) / (2^b_a - 1)` and
/// `Delta_2o = 2 max_{i} (r2_oi s_i) / (2^b - 2)`, the max over the tensor or over output channel o.
/// DFQ's weight-only rule `s_i = sqrt(r1_i / r2_i)` ignores the activation term: on EfficientNet it
/// stretched the per-tensor activation ranges 60x between channels. The scales that minimize
/// `E` are found by a damped fixed point (`s_i^4 = A_i / B_i` with the steps held), started from
/// DFQ's and from 1; the best of those candidates (1 and DFQ's included) is taken.
struct EqualizationNoise {
  var target: EqualizationTarget
  /// Output-channel ranges of W1.
  var r1: [Float]
  /// `P_i`.
  var patchEnergy: [Double]
  /// `N_i`.
  var columnEnergy: [Double]
  /// Per output o of layer 2: its input channels and `max |W2[o, i, :]|` for each.
  var rows: [(channels: Range<Int>, ranges: [Float])]
  var taps: Int
  /// Statistics of the activations `a_i` (current scaling).
  var activations: ChannelMoments

  var weightLevels: Float { Float((1 << weightBits) - 2) }
  var weightBits: Int { target.weightBits }
  var activationLevels: Float { Float((1 << target.activationBits) - 1) }

  /// The model of one pair as it stands in `g`, with layer 1's input statistics `input` and the
  /// activations' `activations` (both at the current scaling).
  init?(_ g: Graph, _ p: CrossLayerEqualization.Pair, target: EqualizationTarget, input: ChannelMoments,
        activations: ChannelMoments) {
    let first = g.nodes[p.first], second = g.nodes[p.second]
    guard let w1 = g.initializers[first.inputs[1]], let w2 = g.initializers[second.inputs[1]], w1.rank == w2.rank else { return nil }
    let channels = w1.shape[0], groups2 = CrossLayerEqualization.group(of: second), groups1 = CrossLayerEqualization.group(of: first)
    let cg2 = w2.shape[1], m2 = w2.shape[0]
    guard cg2 * groups2 == channels, activations.maximum.count == channels, m2 % groups2 == 0,
          input.meanSquare.count == w1.shape[1] * groups1 else { return nil }
    self.target = target
    r1 = CrossLayerEqualization.outputChannelRanges(w1)
    // P_i: layer 1's taps times the mean square of the input channels its group reads.
    let taps1 = w1.count / max(channels * w1.shape[1], 1), cg1 = w1.shape[1], perGroup1 = channels / max(groups1, 1)
    patchEnergy = (0..<channels).map { i in
      let g = i / max(perGroup1, 1)
      return Double(taps1) * input.meanSquare[(g * cg1)..<((g + 1) * cg1)].reduce(0, +)
    }
    let taps = w2.count / max(m2 * cg2, 1)
    self.taps = taps
    let v = w2.floats, mg = m2 / groups2
    var energy = [Double](repeating: 0, count: channels)
    rows = (0..<m2).map { o in
      let base = (o / mg) * cg2
      let ranges = (0..<cg2).map { l -> Float in
        var r: Float = 0
        for t in 0..<taps {
          let w = v[(o * cg2 + l) * taps + t]
          r = max(r, abs(w))
          energy[base + l] += Double(w * w)
        }
        return r
      }
      return (base..<(base + cg2), ranges)
    }
    columnEnergy = energy
    self.activations = activations
  }

  /// Layer 2's step per output row for scales `s`.
  func secondSteps(_ s: [Float]) -> [Float] {
    let rowMax = rows.map { row in zip(row.channels, row.ranges).reduce(Float(0)) { max($0, $1.1 * s[$1.0]) } }
    if target.perChannel { return rowMax.map { 2 * $0 / weightLevels } }
    let step = 2 * (rowMax.max() ?? 0) / weightLevels
    return [Float](repeating: step, count: rows.count)
  }

  /// `E(s)`.
  func noise(_ s: [Float]) -> Double {
    let (w1, act) = firstSteps(s)
    var total: Double = 0
    let rho = target.weightNoiseFactor
    for i in s.indices {
      total += Double(s[i] * s[i]) * columnEnergy[i] * (rho * Double(w1[i] * w1[i]) * patchEnergy[i] + Double(act * act))
    }
    let d2 = secondSteps(s)
    for (o, row) in rows.enumerated() {
      var sum: Double = 0
      for i in row.channels { sum += Double(taps) * activations.meanSquare[i] / Double(s[i] * s[i]) }
      total += rho * Double(d2[o] * d2[o]) * sum
    }
    return total
  }

  /// Layer 1's step per channel and the activations' step for scales `s`.
  func firstSteps(_ s: [Float]) -> (weights: [Float], activation: Float) {
    let scaled = zip(r1, s).map { $0 / $1 }
    let w1 = target.perChannel ? scaled.map { 2 * $0 / weightLevels }
      : [Float](repeating: 2 * (scaled.max() ?? 0) / weightLevels, count: s.count)
    let act = zip(activations.maximum, s).map { $0 / $1 }.max() ?? 0
    return (w1, act / activationLevels)
  }

  /// `s` times the constant that makes layer 1's and layer 2's largest ranges equal,
  /// `max_i r1_i / s_i = max_i r2_i s_i`, as DFQ's scales do per channel. `E` is the same for `s`
  /// and `c s` (every quantizer scales along), so this pins the one free factor; without it the
  /// iterates drift and chained pairs push values towards float's limits.
  func normalized(_ s: [Float]) -> [Float] {
    var r2 = [Float](repeating: 0, count: s.count)
    for row in rows { for (i, r) in zip(row.channels, row.ranges) { r2[i] = max(r2[i], r) } }
    let first = zip(r1, s).map { $0 / $1 }.max() ?? 0, second = zip(r2, s).map { $0 * $1 }.max() ?? 0
    guard first > 0, second > 0, first.isFinite, second.isFinite else { return s }
    let c = (first / second).squareRoot()
    return s.map { $0 * c }
  }

  /// The scales with the least `E` among 1, `dfq` and the fixed-point iterates from both.
  func bestScales(dfq: [Float]) -> [Float] {
    let ones = [Float](repeating: 1, count: r1.count)
    var best = ones, bestNoise = noise(ones)
    func consider(_ s: [Float]) {
      let e = noise(s)
      if e.isFinite, e < bestNoise { (best, bestNoise) = (s, e) }
    }
    consider(dfq)
    for start in [ones, dfq] {
      var s = start
      for _ in 0..<24 {
        let (w1, act) = firstSteps(s)
        let d2 = secondSteps(s)
        var a = [Double](repeating: 0, count: s.count)
        for (o, row) in rows.enumerated() {
          for i in row.channels { a[i] += target.weightNoiseFactor * Double(d2[o] * d2[o]) * Double(taps) * activations.meanSquare[i] }
        }
        let next = s.indices.map { i -> Float in
          // Per channel, layer 1's noise does not depend on s_i: only the activation's does.
          let firstNoise = target.perChannel ? 0 : target.weightNoiseFactor * Double(w1[i] * w1[i]) * patchEnergy[i]
          let b = columnEnergy[i] * (firstNoise + Double(act * act))
          guard a[i] > 0, b > 0 else { return s[i] }
          let target = Float((a[i] / b).squareRoot().squareRoot())
          // Damped: the steps move with s.
          return min(max((s[i] * target).squareRoot(), 1e-4), 1e4)
        }
        s = normalized(next)
        consider(s)
      }
    }
    return best
  }
}
