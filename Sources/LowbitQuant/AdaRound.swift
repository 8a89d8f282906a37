import Foundation
import LowbitCore
import LowbitTrain

/// AdaRound's settings (white paper sec. 3.4; Nagel et al. 2020). Defaults in the comments.
public struct AdaRoundOptions: Sendable, Equatable, Codable {
  /// Optimization steps per layer (default 500).
  public var iterations = 500
  /// Optimization steps per layer for per-channel weights of 8 bits or more, where a grid per
  /// channel already leaves little rounding error to learn (default 150;
  /// `QuantConfig.adaRoundInUse`). Measured on the fm_* models, held-out KL from FP32 at
  /// per-channel W8A8 (benchmarks/results/ptq_holdout_w8_adaround_*.json): 150 steps give
  /// 1.02x, 0.98x and 1.06x of 500 steps' KL (round-to-nearest 1.6x, 0.97x, 1.7x) in a quarter
  /// to a half of the time; per-tensor weights keep `iterations` (fm_mobilenetv2 1.6x at 150).
  public var perChannelEightBitIterations = 150
  /// Rows (output positions of a conv, samples of a Gemm) per step (default 512).
  public var batchSize = 512
  /// Weight of the rounding regularizer, lambda (default 0.01).
  public var regularization: Float = 0.01
  /// beta of the regularizer, annealed from `betaStart` to `betaEnd` (defaults 20 and 2).
  public var betaStart: Float = 20
  public var betaEnd: Float = 2
  /// Fraction of the steps before the regularizer switches on (default 0.2).
  public var warmStart: Float = 0.2
  /// Adam's step size on V (default 0.2: with 500 steps, 0.01 leaves V near its start; see
  /// docs/ptq-pipeline.md).
  public var learningRate: Float = 0.2
  /// Seed of the row sampling (default 0).
  public var seed: UInt64 = 0
  /// What one rounding problem covers: a layer (the paper's AdaRound) or a block of layers
  /// (`BlockReconstruction`).
  public var unit: ReconstructionUnit = .layer
  /// Block reconstruction: calibration samples per step (default 32).
  public var blockBatchSize = 32
  /// Block reconstruction: at most this many weighted layers per block (default 8).
  public var blockLayers = 8

  public init() {}

  enum CodingKeys: String, CodingKey {
    case iterations, perChannelEightBitIterations = "per_channel_8bit_iterations", batchSize = "batch_size", regularization, betaStart = "beta_start"
    case betaEnd = "beta_end", warmStart = "warm_start", learningRate = "learning_rate", seed
    case unit, blockBatchSize = "block_batch_size", blockLayers = "block_layers"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = AdaRoundOptions()
    iterations = try c.decodeIfPresent(Int.self, forKey: .iterations) ?? d.iterations
    perChannelEightBitIterations = try c.decodeIfPresent(Int.self, forKey: .perChannelEightBitIterations)
      ?? d.perChannelEightBitIterations
    batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
    regularization = try c.decodeIfPresent(Float.self, forKey: .regularization) ?? d.regularization
    betaStart = try c.decodeIfPresent(Float.self, forKey: .betaStart) ?? d.betaStart
    betaEnd = try c.decodeIfPresent(Float.self, forKey: .betaEnd) ?? d.betaEnd
    warmStart = try c.decodeIfPresent(Float.self, forKey: .warmStart) ?? d.warmStart
    learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
    unit = try c.decodeIfPresent(ReconstructionUnit.self, forKey: .unit) ?? d.unit
    blockBatchSize = try c.decodeIfPresent(Int.self, forKey: .blockBatchSize) ?? d.blockBatchSize
    blockLayers = try c.decodeIfPresent(Int.self, forKey: .blockLayers) ?? d.blockLayers
  }

  /// The same step count for every weight grid (`--adaround-iterations N`).
  public mutating func setIterations(_ n: Int) {
    iterations = n
    perChannelEightBitIterations = n
  }

  /// Throws `invalidArgument` naming the first setting out of range.
  public func validate() throws {
    guard iterations >= 1, perChannelEightBitIterations >= 1 else {
      throw LowbitError.invalidArgument(
        "AdaRound iterations must be at least 1, got \(min(iterations, perChannelEightBitIterations))")
    }
    guard batchSize >= 1 else { throw LowbitError.invalidArgument("AdaRound batch size must be at least 1, got \(batchSize)") }
    guard regularization >= 0, regularization.isFinite else {
      throw LowbitError.invalidArgument("AdaRound regularization must be finite and >= 0, got \(regularization)")
    }
    guard betaStart >= betaEnd, betaEnd >= 1 else {
      throw LowbitError.invalidArgument("AdaRound beta must anneal downwards to at least 1 (got \(betaStart) -> \(betaEnd))")
    }
    guard (0...1).contains(warmStart) else { throw LowbitError.invalidArgument("AdaRound warm start must be in [0, 1], got \(warmStart)") }
    guard blockBatchSize >= 1 else { throw LowbitError.invalidArgument("block reconstruction batch size must be at least 1, got \(blockBatchSize)") }
    guard blockLayers >= 1 else { throw LowbitError.invalidArgument("block reconstruction needs at least 1 layer per block, got \(blockLayers)") }
    guard learningRate > 0, learningRate.isFinite else {
      throw LowbitError.invalidArgument("AdaRound learning rate must be positive, got \(learningRate)")
    }
  }
}

/// What one AdaRound problem covers.
public enum ReconstructionUnit: String, Sendable, Codable, CaseIterable {
  /// One weighted layer, its loss on the layer's activation output (white paper sec. 3.4).
  case layer
  /// A block of layers between single-value cuts (residual block, inception module), its loss
  /// on the block's outputs (BRECQ; `BlockReconstruction`).
  case block
}

/// The activation function after a layer as a clamp per output channel o,
/// `min(max(x, lower), upper_o)`: ReLU `0...inf`, ReLU6 `0...6`, Clip, and a bounded ReLU after
/// cross-layer equalization, whose bound differs per channel (`BoundedReLU`).
public struct ActivationClamp: Sendable, Equatable {
  public var lower: Float
  /// One bound for every channel, or one per channel.
  public var upperBounds: [Float]

  public init(lower: Float, upper: [Float]) {
    self.lower = lower
    self.upperBounds = upper
  }

  public func upper(_ channel: Int) -> Float { upperBounds.count == 1 ? upperBounds[0] : upperBounds[channel] }
}

/// One layer's rounding problem: weights as an `[O, K]` matrix in `groups` blocks of
/// `O / groups` rows (output channel `o` reads group `o / (O / groups)`'s inputs), each weight's
/// quantizer parameters, the bias and the clamp of the activation function after the layer.
public struct RoundingProblem {
  public var groups: Int
  public var outputs: Int
  public var patchSize: Int
  /// `[outputs * patchSize]`, row-major.
  public var weights: [Float]
  /// Per weight: scale and zero point of its grid.
  public var scales: [Float]
  public var zeroPoints: [Float]
  public var grid: IntegerGrid
  public var bias: [Float]
  /// The activation function after the layer as a clamp (ReLU: `0...inf`); nil for none.
  public var activation: ActivationClamp?
  /// Draws `count` rows: the quantized model's inputs, laid out `[groups][count][patchSize]`,
  /// and the float model's outputs after the activation, `[count][outputs]`.
  public var sample: (_ count: Int, _ generator: inout SplitMix64) -> (inputs: [Float], targets: [Float])

  public init(groups: Int, outputs: Int, patchSize: Int, weights: [Float], scales: [Float], zeroPoints: [Float],
              grid: IntegerGrid, bias: [Float], activation: ActivationClamp?,
              sample: @escaping (_ count: Int, _ generator: inout SplitMix64) -> (inputs: [Float], targets: [Float])) {
    self.groups = groups
    self.outputs = outputs
    self.patchSize = patchSize
    self.weights = weights
    self.scales = scales
    self.zeroPoints = zeroPoints
    self.grid = grid
    self.bias = bias
    self.activation = activation
    self.sample = sample
  }
}

/// What AdaRound did to one layer.
public struct AdaRoundOutcome: Sendable, Equatable {
  /// The integers `clip(floor(w / s) + h + z, qmin, qmax)` with `h` in {0, 1}, row-major `[O, K]`.
  public var integers: [Int32]
  /// Reconstruction error `mean_rows sum_o (act(W x_hat + b) - y)^2` on one held-out sample of
  /// rows, with round-to-nearest and with the learned rounding.
  public var nearestError: Float
  public var adaRoundError: Float
  /// Fraction of weights rounded differently from round-to-nearest.
  public var flipped: Float
  /// True when the learned rounding reconstructed the held-out rows worse than round-to-nearest
  /// did, so `integers` are round-to-nearest's (and `flipped` is 0).
  public var keptNearest = false
}

/// Adaptive rounding (white paper sec. 3.4, eq. 21-25).
///
/// Instead of rounding `w / s` to the nearest integer, each weight learns whether to round down
/// or up: `w_soft = s * (clip(floor(w / s) + h(V) + z, qmin, qmax) - z)` with the rectified sigmoid
/// `h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`, `zeta = 1.1`, `gamma = -0.1`, minimizing
///
///     mean_rows || f(W_soft x_hat + b) - f(W x + b) ||^2 + lambda * sum (1 - |2 h(V) - 1|^beta)
///
/// where `f` is the activation after the layer, `x` the float model's input to the layer and
/// `x_hat` the input with the preceding layers quantized (asymmetric reconstruction). beta is held
/// off for the warm start, then cosine-annealed from `betaStart` to `betaEnd`; the regularizer
/// drives every `h` to 0 or 1. V starts where `h(V)` equals the fractional part of `w / s`, and
/// is optimized by Adam.
public enum AdaRound {
  public static let zeta = SoftRounding.zeta
  public static let gamma = SoftRounding.gamma

  /// `h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`.
  public static func rectifiedSigmoid(_ v: Float) -> Float { SoftRounding.rectifiedSigmoid(v) }

  /// `dh/dV`: `(zeta - gamma) sigmoid(V) (1 - sigmoid(V))` where h is not clipped, else 0.
  public static func rectifiedSigmoidDerivative(_ v: Float) -> Float { SoftRounding.rectifiedSigmoidDerivative(v) }

  /// The V with `h(V) = fraction` for a fraction in [0, 1).
  public static func initialV(fraction: Float) -> Float { SoftRounding.initialVariable(fraction: fraction) }

  /// The regularizer term of one weight, `1 - |2h - 1|^beta`.
  public static func regularizer(_ h: Float, beta: Float) -> Float {
    1 - pow(abs(2 * h - 1), beta)
  }

  /// `d/dh (1 - |2h - 1|^beta) = -2 beta |2h - 1|^(beta - 1) sign(2h - 1)`.
  public static func regularizerDerivative(_ h: Float, beta: Float) -> Float {
    let u = 2 * h - 1
    if u == 0 { return 0 }
    return -2 * beta * pow(abs(u), beta - 1) * (u > 0 ? 1 : -1)
  }

  /// beta at step `t` of `total`: nil during the warm start (no regularizer), then
  /// `end + (start - end) (1 + cos(pi r)) / 2` with `r` going from 0 to 1.
  public static func beta(step t: Int, of total: Int, _ options: AdaRoundOptions) -> Float? {
    let warm = Int((Float(total) * options.warmStart).rounded(.down))
    if t < warm { return nil }
    let r = total - warm <= 1 ? 1 : Float(t - warm) / Float(total - warm - 1)
    return options.betaEnd + (options.betaStart - options.betaEnd) * 0.5 * (1 + cos(Float.pi * r))
  }

  static func sigmoid(_ v: Float) -> Float { 1 / (1 + exp(-v)) }

  /// Learns the rounding of `problem`'s weights.
  public static func optimize(_ problem: RoundingProblem, options: AdaRoundOptions) -> AdaRoundOutcome {
    let count = problem.weights.count
    let qmin = Float(problem.grid.qmin), qmax = Float(problem.grid.qmax)
    var state: [SoftWeight] = []
    state.reserveCapacity(count)
    var nearest = [Float](repeating: 0, count: count)
    var nearestIntegers = [Int32](repeating: 0, count: count)
    for e in 0..<count {
      let x = problem.weights[e] / problem.scales[e]
      let f = x.rounded(.down)
      state.append(SoftWeight(
        base: f, v: initialV(fraction: min(max(x - f, 0), 0.999_999)), scale: problem.scales[e],
        zeroPoint: problem.zeroPoints[e]))
      let q = min(max(x.rounded(.toNearestOrEven) + problem.zeroPoints[e], qmin), qmax)
      nearestIntegers[e] = Int32(q)
      nearest[e] = problem.scales[e] * (q - problem.zeroPoints[e])
    }
    var generator = SplitMix64(seed: options.seed)
    let heldOut = problem.sample(options.batchSize, &generator)
    var soft = [Float](repeating: 0, count: count)
    for t in 0..<options.iterations {
      SoftWeight.softWeights(&state, into: &soft, qmin: qmin, qmax: qmax)
      let batch = problem.sample(options.batchSize, &generator)
      let rows = batch.targets.count / problem.outputs
      let gradient = reconstructionGradient(problem, weights: soft, batch, rows: rows)
      SoftWeight.adamStep(
        &state, gradient: gradient, step: t, beta: beta(step: t, of: options.iterations, options),
        learningRate: options.learningRate, lambda: options.regularization)
    }
    var integers = [Int32](repeating: 0, count: count)
    var hard = [Float](repeating: 0, count: count)
    var flipped = 0
    for e in 0..<count {
      let q = min(max(state[e].base + (state[e].v >= 0 ? 1 : 0) + problem.zeroPoints[e], qmin), qmax)
      integers[e] = Int32(q)
      hard[e] = problem.scales[e] * (q - problem.zeroPoints[e])
      if hard[e] != nearest[e] { flipped += 1 }
    }
    let heldRows = heldOut.targets.count / problem.outputs
    var outcome = AdaRoundOutcome(
      integers: integers,
      nearestError: reconstructionError(problem, weights: nearest, heldOut, rows: heldRows),
      adaRoundError: reconstructionError(problem, weights: hard, heldOut, rows: heldRows),
      flipped: count == 0 ? 0 : Float(flipped) / Float(count))
    if outcome.adaRoundError > outcome.nearestError {
      // The learned rounding lost on the held-out rows: never return worse than nearest.
      outcome.integers = nearestIntegers
      outcome.flipped = 0
      outcome.keptNearest = true
    }
    return outcome
  }

  /// Runs `body(group, a, b, out)` for every group, in parallel chunks of groups, with the
  /// buffers' base addresses: each group must read within `a` and `b` and write only its own
  /// part of `out`.
  static func eachGroup(
    _ groups: Int, cost: Int, _ a: [Float], _ b: [Float], into out: inout [Float],
    _ body: @Sendable (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
  ) {
    a.withUnsafeBufferPointer { pa in
      b.withUnsafeBufferPointer { pb in
        out.withUnsafeMutableBufferPointer { po in
          // Safety: chunks are disjoint groups, and each group writes only its own part of `out`.
          let (sa, sb, so) = (SharedBuffer(pa), SharedBuffer(pb), SharedBuffer(po))
          parallelChunks(groups, costPerItem: cost) { range in
            let (xa, xb, xo) = (UnsafePointer(sa.pointer()), UnsafePointer(sb.pointer()), so.pointer())
            for g in range { body(g, xa, xb, xo) }
          }
        }
      }
    }
  }

  /// `act(X W^T + b)` for the sampled rows, `[rows][outputs]`, and the pre-activations.
  static func forward(_ p: RoundingProblem, weights: [Float], _ inputs: [Float], rows: Int) -> [Float] {
    let og = p.outputs / p.groups, k = p.patchSize
    var out = [Float](repeating: 0, count: rows * p.outputs)
    if p.groups == 1 {
      MatrixProduct.gemm(inputs, weights, into: &out, m: rows, n: p.outputs, k: k, transB: true)
    } else if og * k <= 64 {
      // Depthwise and other thin groups: direct dot products.
      let outputs = p.outputs
      eachGroup(p.groups, cost: rows * og * k, inputs, weights, into: &out) { g, px, pw, py in
        for r in 0..<rows {
          let x = px + (g * rows + r) * k
          for o in 0..<og {
            let w = pw + (g * og + o) * k
            var s: Float = 0
            for j in 0..<k { s += x[j] * w[j] }
            py[r * outputs + g * og + o] = s
          }
        }
      }
    } else {
      for g in 0..<p.groups {
        let x = Array(inputs[(g * rows * k)..<((g + 1) * rows * k)])
        let w = Array(weights[(g * og * k)..<((g + 1) * og * k)])
        let y = MatrixProduct.product(x, w, m: rows, n: og, k: k, transB: true)
        for r in 0..<rows { for o in 0..<og { out[r * p.outputs + g * og + o] = y[r * og + o] } }
      }
    }
    let outputs = p.outputs, bias = p.bias
    out.withUnsafeMutableBufferPointer { ys in
      // Row r is ys[r * outputs ..< (r + 1) * outputs]; chunks are disjoint rows.
      let py = SharedBuffer(ys)
      parallelChunks(rows, costPerItem: outputs) { range in
        for r in range { for o in 0..<outputs { py[r * outputs + o] += bias[o] } }
      }
    }
    return out
  }

  static func clamp(_ x: Float, _ a: ActivationClamp?, channel: Int) -> Float {
    guard let a = a else { return x }
    let upper = a.upper(channel)
    return x < a.lower ? a.lower : (x > upper ? upper : x)
  }

  /// `mean_rows sum_o (act(W x + b) - y)^2`.
  static func reconstructionError(
    _ p: RoundingProblem, weights: [Float], _ batch: (inputs: [Float], targets: [Float]), rows: Int
  ) -> Float {
    let pre = forward(p, weights: weights, batch.inputs, rows: rows)
    var total: Double = 0
    for i in pre.indices {
      let d = clamp(pre[i], p.activation, channel: i % p.outputs) - batch.targets[i]
      total += Double(d * d)
    }
    return rows == 0 ? 0 : Float(total / Double(rows))
  }

  /// d(reconstruction error)/dW, `[O, K]`.
  static func reconstructionGradient(
    _ p: RoundingProblem, weights: [Float], _ batch: (inputs: [Float], targets: [Float]), rows: Int
  ) -> [Float] {
    let pre = forward(p, weights: weights, batch.inputs, rows: rows)
    let scale = 2 / Float(max(rows, 1))
    let (activation, outputs, targets) = (p.activation, p.outputs, batch.targets)
    let g = parallelIndexedMap(pre.count, costPerItem: 4) { i -> Float in
      let y = clamp(pre[i], activation, channel: i % outputs)
      let passes = activation.map { pre[i] > $0.lower && pre[i] < $0.upper(i % outputs) } ?? true
      return passes ? scale * (y - targets[i]) : 0
    }
    let og = p.outputs / p.groups, k = p.patchSize
    var result = [Float](repeating: 0, count: p.outputs * k)
    if p.groups == 1 {
      MatrixProduct.gemm(g, batch.inputs, into: &result, m: p.outputs, n: k, k: rows, transA: true)
    } else {
      let outputs = p.outputs
      eachGroup(p.groups, cost: rows * og * k, g, batch.inputs, into: &result) { grp, pg, px, pr in
        for o in 0..<og {
          let dst = pr + (grp * og + o) * k
          for r in 0..<rows {
            let gv = pg[r * outputs + grp * og + o]
            if gv == 0 { continue }
            let x = px + (grp * rows + r) * k
            for j in 0..<k { dst[j] += gv * x[j] }
          }
        }
      }
    }
    return result
  }
}

/// One weight's AdaRound state: its floor `base = floor(w / s)`, the variable V and Adam's
/// moments, and what the last soft-rounding pass computed from V.
struct SoftWeight {
  var base: Float
  var v: Float
  var scale: Float
  var zeroPoint: Float
  var m: Float = 0
  var s2: Float = 0
  /// `h(V)`, `dh/dV` (0 where h is clipped) and `d w_soft / dV` (0 where the grid clips).
  var h: Float = 0
  var dh: Float = 0
  var slope: Float = 0

  static let beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8

  /// Runs `body(&weight, e)` for every weight `e`, in parallel chunks.
  static func forEach(_ state: inout [SoftWeight], _ body: @Sendable (inout SoftWeight, Int) -> Void) {
    state.withUnsafeMutableBufferPointer { st in
      // Chunks are disjoint index ranges of the buffer.
      let ps = SharedBuffer(st)
      parallelChunks(st.count, costPerItem: 16) { range in
        for e in range { body(&ps.pointer(at: e, count: 1).pointee, e) }
      }
    }
  }

  /// `w_soft = s (clip(base + h(V) + z, qmin, qmax) - z)` for every weight, in parallel chunks;
  /// each weight is computed as a serial loop would.
  static func softWeights(_ state: inout [SoftWeight], into soft: inout [Float], qmin: Float, qmax: Float) {
    let zeta = AdaRound.zeta, gamma = AdaRound.gamma
    precondition(soft.count == state.count, "AdaRound: \(soft.count) soft weights for \(state.count) weights")
    soft.withUnsafeMutableBufferPointer { out in
      // `out` holds one entry per weight.
      let po = SharedBuffer(out)
      forEach(&state) { w, e in
        let sg = AdaRound.sigmoid(w.v), raw = sg * (zeta - gamma) + gamma
        w.h = min(1, max(0, raw))
        w.dh = raw > 0 && raw < 1 ? (zeta - gamma) * sg * (1 - sg) : 0
        let q = w.base + w.h + w.zeroPoint
        w.slope = q > qmin && q < qmax ? w.scale * w.dh : 0
        po[e] = w.scale * (min(max(q, qmin), qmax) - w.zeroPoint)
      }
    }
  }

  /// One Adam step on V with `d loss / d w_soft = gradient` (chained through `slope`) plus the
  /// regularizer's `lambda d/dh (1 - |2h - 1|^beta) dh/dV` once `beta` is on, at step `t`.
  static func adamStep(
    _ state: inout [SoftWeight], gradient: [Float], step t: Int, beta: Float?, learningRate lr: Float, lambda: Float
  ) {
    let correction1 = 1 - pow(beta1, Float(t + 1)), correction2 = 1 - pow(beta2, Float(t + 1))
    precondition(gradient.count == state.count, "AdaRound: \(gradient.count) gradients for \(state.count) weights")
    gradient.withUnsafeBufferPointer { gradients in
      let gs = SharedBuffer(gradients)
      forEach(&state) { w, e in
        var g = gs[e] * w.slope
        if let beta, w.dh != 0 { g += lambda * AdaRound.regularizerDerivative(w.h, beta: beta) * w.dh }
        w.m = beta1 * w.m + (1 - beta1) * g
        w.s2 = beta2 * w.s2 + (1 - beta2) * g * g
        w.v -= lr * (w.m / correction1) / ((w.s2 / correction2).squareRoot() + epsilon)
      }
    }
  }
}
