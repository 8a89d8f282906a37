import Foundation
import LowbitCore
import LowbitTrain

/// Settings of quantizer tuning (`QuantizerTuning`). Defaults in the comments.
public struct QuantizerTuningOptions: Sendable, Equatable, Codable {
  /// Adam steps (default 200).
  public var iterations = 200
  /// Calibration samples per step (default 32).
  public var batchSize = 32
  /// Adam's step size on the logarithm of every scale, i.e. a relative change of the scale
  /// (default 0.002), cosine-decayed to 0; zero points move `offsetRate` times as far, in grid steps.
  public var learningRate: Float = 0.002
  /// Zero points' step size over the scales' (default 1).
  public var offsetRate: Float = 1
  /// Seed of the sample draws (default 0).
  public var seed: UInt64 = 0

  public init() {}

  /// 100 steps of 8 samples: what per-tensor weights with 8-bit activations get by default
  /// (`QuantConfig.quantizerTuningInUse`).
  public static var light: QuantizerTuningOptions {
    var o = QuantizerTuningOptions()
    o.iterations = 100
    o.batchSize = 8
    return o
  }

  enum CodingKeys: String, CodingKey {
    case iterations, batchSize = "batch_size", learningRate = "learning_rate", offsetRate = "offset_rate", seed
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = QuantizerTuningOptions()
    iterations = try c.decodeIfPresent(Int.self, forKey: .iterations) ?? d.iterations
    batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
    learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
    offsetRate = try c.decodeIfPresent(Float.self, forKey: .offsetRate) ?? d.offsetRate
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
  }

  /// Throws `invalidArgument` naming the first setting out of range.
  public func validate() throws {
    guard iterations >= 1 else { throw LowbitError.invalidArgument("quantizer tuning iterations must be at least 1, got \(iterations)") }
    guard batchSize >= 1 else { throw LowbitError.invalidArgument("quantizer tuning batch size must be at least 1, got \(batchSize)") }
    guard learningRate > 0, learningRate.isFinite, offsetRate >= 0, offsetRate.isFinite else {
      throw LowbitError.invalidArgument("quantizer tuning step sizes must be positive and finite, got \(learningRate) and x\(offsetRate)")
    }
  }
}

/// What quantizer tuning did.
public struct QuantizerTuningRecord: Sendable, Codable, Equatable {
  /// Scales and zero points trained.
  public var scales: Int
  public var zeroPoints: Int
  /// The loss: "divergence" (KL from the float model's softmax, for logits), "mean square" (other
  /// outputs), or "divergence and mean square" when the graph has outputs of both kinds.
  public var loss: String
  /// The mean loss on the judging samples before tuning and at the lowest checkpoint.
  public var before: Float
  public var after: Float
  /// Samples the checkpoints were judged on, and whether the steps never saw them (held out) or
  /// they are the fitting samples themselves (too few calibration batches to hold any out).
  public var judgedOn: Int
  public var heldOut: Bool
  /// The checkpoint with the lowest loss (checkpoints every quarter of the steps; 0: none beat
  /// the start).
  public var step: Int
  /// Wilcoxon's signed-rank statistic of its per-sample losses against the start's, as a z-score
  /// (`QuantizerTuning.signedRankZ`; positive when the checkpoint lowers them).
  public var signedRankZ: Float
  /// Whether the tuned quantizers replaced the range-set ones: the checkpoint lowers the mean
  /// loss and `signedRankZ` exceeds `QuantizerTuning.requiredZ` (or the user asked for tuning).
  public var kept: Bool

  enum CodingKeys: String, CodingKey {
    case scales, zeroPoints = "zero_points", loss, before, after, judgedOn = "judged_on", heldOut = "held_out", step
    case signedRankZ = "signed_rank_z", kept
  }
}

/// Quantizer tuning: after range setting, every quantizer's scale (weights and activations) and
/// every activation zero point are trained end to end, the integers of the weights held fixed,
/// to bring the quantized model's outputs to the float model's on the calibration data.
///
/// The quantized model is the QAT graph (`QuantizationAwareTraining.graph`) with each weight
/// read as `w_hat = s * (q - z)`: the integers `q` from range setting and AdaRound stay, the
/// scale `s` (per tensor or per channel) acts as a learned gain (`d w_hat / d s = q - z`).
/// Activations are `FakeQuantize` nodes with LSQ's gradients (eq. 37-39) on their scale and
/// offset; biases are rounded to int32 at `s_w s_x` as the file stores them. The loss is, per
/// graph output, `KL(softmax(t) || softmax(y))` for logits ([N, C], rows not normalized:
/// `OutputLoss.isLogits`) and the mean square over rows otherwise (embeddings, probabilities,
/// feature maps), against the float model's outputs `t`. Adam steps `log s` (so the step is a
/// relative change and scales stay positive) and the zero points (clamped into the grid).
/// Few parameters are trained (one or a few per layer), so 1,024 calibration samples hold them.
/// The steps draw from `batches`; the loss on `heldOut` (rows the steps never saw) is measured
/// at the start and after every quarter of the steps. The lowest checkpoint is kept when the
/// held-out samples show its gain is not chance: Wilcoxon's signed-rank test on the paired
/// per-sample losses, z above 2 (one-sided p about 0.02). A rank test, because per-sample KL is
/// heavy-tailed: a few samples near a decision flip carry most of the mean and of its variance,
/// so a bound on the mean's standard error turns down even a threefold gain on 32 samples. Else
/// the range-set quantizers stay, so a gain that only fits the drawn samples is not taken.
public enum QuantizerTuning {
  public struct Outcome: Sendable {
    public var quantizers: [String: TensorQuantizer]
    /// `transformed` with each tuned weight set to `s (q - z)` at its new scale.
    public var graph: Graph
    public var record: QuantizerTuningRecord
  }

  /// Tunes `quantizers` (keyed by site) of `transformed` towards `float`'s outputs on `batches`,
  /// keeping the checkpoint with the lowest loss on `heldOut` (`batches` themselves when nil)
  /// when the signed-rank test passes, or whenever it lowers that loss if the user `asked` for
  /// tuning; `.failure` names the node when some node cannot pass gradients.
  public static func run(
    float: Graph, transformed: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    batches: [[String: Tensor]], heldOut: [[String: Tensor]]? = nil, asked: Bool = false, opset: Int,
    options: QuantizerTuningOptions,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> Result<Outcome, StepFallback> {
    try options.validate()
    let qat: Graph, parameters: QATParameters
    do {
      (qat, parameters) = try QuantizationAwareTraining.graph(
        transformed, sites: sites, quantizers: quantizers, opset: opset, gradientScaling: false)
    } catch let error as LowbitError where error.kind == .unsupported {
      return .failure(StepFallback(message: error.description))  // per-group weights have no FakeQuantize form
    }
    var (graph, weights) = try readingIntegers(qat, parameters: parameters, quantizers: quantizers)
    var trainable = Set(parameters.quantizers.map(\.scale))
    var offsets: Set<String> = []
    for entry in parameters.quantizers where entry.kind == .activation { if let o = entry.offset { offsets.insert(o) } }
    trainable.formUnion(offsets)
    graph = try graph.validated()
    if let reason = BlockReconstruction.obstacle(graph, nodes: Array(graph.nodes.indices), carrying: trainable) {
      return .failure(StepFallback(message: reason))
    }
    var trainer = try Trainer(graph)
    let outputs = graph.outputs.map(\.name)
    let teacher = try Interpreter(float)
    let inputs = graph.inputs.map(\.name)
    /// The float model's outputs on `set`, per output then batch.
    func floatOutputs(_ set: [[String: Tensor]], sizes: [Int]) throws -> Result<[[Tensor]], StepFallback> {
      var targets: [[Tensor]] = outputs.map { _ in [] }
      for (b, feeds) in set.enumerated() {
        let result = try teacher.run(feeds)
        for (k, name) in outputs.enumerated() {
          guard let t = result[name], t.dtype.isFloatingPoint else {
            return .failure(StepFallback(message: "graph output '\(name)' is not a float value"))
          }
          guard t.shape.first == sizes[b] else {
            return .failure(StepFallback(message: "graph output '\(name)' (\(t.shape)) is not a batch of \(sizes[b]) samples"))
          }
          targets[k].append(t)
        }
      }
      return .success(targets)
    }
    let judging = heldOut ?? batches
    let sizes = try CalibrationSamples.batchSizes(batches, graph: graph)
    let judgingSizes = heldOut == nil ? sizes : try CalibrationSamples.batchSizes(judging, graph: graph)
    let targets: [[Tensor]], judgingTargets: [[Tensor]]
    switch try floatOutputs(batches, sizes: sizes) {
    case .success(let t): targets = t
    case .failure(let reason): return .failure(reason)
    }
    if heldOut == nil {
      judgingTargets = targets  // judged on the fitting rows: the float model runs on them once
    } else {
      switch try floatOutputs(judging, sizes: judgingSizes) {
      case .success(let j): judgingTargets = j
      case .failure(let reason): return .failure(reason)
      }
    }
    let logits = targets.map { OutputLoss.isLogits($0) }
    let lossName = logits.allSatisfy { $0 } ? "divergence" : logits.contains(true) ? "divergence and mean square" : "mean square"

    func loss(_ tape: GradientTape, _ wanted: [Tensor]) -> (Double, [String: Tensor]) {
      var total = 0.0, gradients: [String: Tensor] = [:]
      for (k, name) in outputs.enumerated() {
        let (value, gradient) = OutputLoss.compare(tape.values[name]!, wanted[k], logits: logits[k])
        total += value
        gradients[name] = gradient
      }
      return (total, gradients)
    }
    /// The loss of each judging sample (summed over the graph's outputs).
    func judgedLosses() throws -> [Double] {
      var losses: [Double] = []
      for (b, feeds) in judging.enumerated() {
        let tape = try trainer.forward(feeds, mode: .inference)
        for n in 0..<judgingSizes[b] {
          var total = 0.0
          for (k, name) in outputs.enumerated() {
            let one = [(batch: 0, index: n)]
            total += OutputLoss.compare(
              CalibrationSamples.gather([tape.values[name]!], one), CalibrationSamples.gather([judgingTargets[k][b]], one),
              logits: logits[k]).loss
          }
          losses.append(total)
        }
      }
      return losses
    }

    let start = try judgedLosses()
    let before = Float(Self.mean(start))
    let initial = trainer.parameters
    let samples = CalibrationSamples(sizes: sizes)
    var generator = SplitMix64(seed: options.seed)
    var logScales: [String: Tensor] = [:], zeroPoints: [String: Tensor] = [:]
    for name in trainable {
      let t = initial[name]!
      if offsets.contains(name) { zeroPoints[name] = t } else { logScales[name] = Tensor(shape: t.shape, floats: t.floats.map { Foundation.log($0) }) }
    }
    var scaleAdam = Adam(), offsetAdam = Adam()
    // Mini-batch KL is heavy-tailed (a few samples near a decision flip dominate it), so the
    // parameters are checkpointed on the judging samples four times; the lowest checkpoint is
    // kept only if the signed-rank test tells its gain from chance.
    let checkpointEvery = max(1, options.iterations / 4)
    var best = (loss: before, step: 0, graph: trainer.graph, z: Float(0))
    for step in 0..<options.iterations {
      let picks = samples.draw(options.batchSize, &generator)
      var feeds: [String: Tensor] = [:]
      for name in inputs { feeds[name] = CalibrationSamples.gather(batches.map { $0[name]! }, picks) }
      let tape = try trainer.forward(feeds, mode: .inference)
      let (_, outputGradients) = loss(tape, targets.map { CalibrationSamples.gather($0, picks) })
      let gradients = try trainer.backward(tape, outputGradients: outputGradients, only: trainable)
      var current = trainer.parameters
      var scaleGradients: [String: Tensor] = [:]
      for (name, u) in logScales {
        // d L / d log s = s * d L / d s.
        let s = current[name]!.floats, g = gradients[name]!.floats
        scaleGradients[name] = Tensor(shape: u.shape, floats: zip(s, g).map { $0 * $1 })
      }
      let rate = options.learningRate * 0.5 * (1 + cos(Float.pi * Float(step) / Float(options.iterations)))
      try scaleAdam.update(&logScales, gradients: scaleGradients, learningRate: rate)
      try offsetAdam.update(&zeroPoints, gradients: gradients, learningRate: rate * options.offsetRate)
      for (name, u) in logScales { current[name] = Tensor(shape: u.shape, floats: u.floats.map { Foundation.exp($0) }) }
      for (name, z) in zeroPoints { current[name] = z }
      trainer.parameters = current
      trainer.projectParameters()
      let projected = trainer.parameters
      for name in Array(zeroPoints.keys) { zeroPoints[name] = projected[name]! }
      if (step + 1) % checkpointEvery == 0 || step + 1 == options.iterations {
        let losses = try judgedLosses()
        let value = Float(Self.mean(losses))
        if value < best.loss { best = (value, step + 1, trainer.graph, Float(Self.signedRankZ(start, losses))) }
      }
      progress?(step + 1, options.iterations)
    }
    let record = QuantizerTuningRecord(
      scales: parameters.quantizers.count, zeroPoints: offsets.count, loss: lossName, before: before, after: best.loss,
      judgedOn: start.count, heldOut: heldOut != nil, step: best.step, signedRankZ: best.z,
      kept: best.step > 0 && (asked || best.z > Self.requiredZ))
    guard record.kept else {
      return .success(Outcome(quantizers: quantizers, graph: transformed, record: record))
    }
    return .success(try tuned(
      best.graph, parameters: parameters, weights: weights, quantizers: quantizers, transformed: transformed, record: record))
  }

  static func mean(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count) }

  /// The signed-rank z-score a checkpoint must pass to be kept.
  static let requiredZ: Float = 2

  /// Wilcoxon's signed-rank statistic of the paired differences `d_i = a_i - b_i` as a z-score:
  /// zero differences dropped, the rest ranked by `|d_i|` (ties share their mean rank),
  /// `W = sum of the ranks of positive d_i`, `z = (W - n (n + 1) / 4) / sqrt(n (n + 1) (2n + 1) / 24)`;
  /// 0 when every difference is zero.
  static func signedRankZ(_ a: [Double], _ b: [Double]) -> Double {
    let d = zip(a, b).map { $0 - $1 }.filter { $0 != 0 }
    let n = Double(d.count)
    guard n > 0 else { return 0 }
    let order = d.indices.sorted { abs(d[$0]) < abs(d[$1]) }
    var w = 0.0, k = 0
    while k < order.count {
      var end = k
      while end + 1 < order.count && abs(d[order[end + 1]]) == abs(d[order[k]]) { end += 1 }
      let rank = Double(k + end) / 2 + 1  // ranks k+1 ... end+1 share their mean
      for i in k...end where d[order[i]] > 0 { w += rank }
      k = end + 1
    }
    return (w - n * (n + 1) / 4) / (n * (n + 1) * (2 * n + 1) / 24).squareRoot()
  }

  /// A weight read through its integers: `w_hat = s * (q - z)`, `s` reshaped to broadcast along
  /// the channel axis.
  struct IntegerWeight {
    var site: String
    var scale: String
    /// `q - z` per element, as floats.
    var integers: [Float]
  }

  /// `qat` with every weight FakeQuantize node replaced by `Mul(q - z, Reshape(s))`.
  static func readingIntegers(
    _ qat: Graph, parameters: QATParameters, quantizers: [String: TensorQuantizer]
  ) throws -> (Graph, [IntegerWeight]) {
    var g = qat
    var weights: [IntegerWeight] = []
    for entry in parameters.quantizers where entry.kind == .weight {
      guard let index = g.nodes.firstIndex(where: { $0.name == entry.node }), let w = g.initializers[entry.site],
            let q = quantizers[entry.site] else { continue }
      let ints = q.quantize(w.floats, shape: w.shape)
      let paramIndex = TensorQuantizer.paramIndex(q.granularity, for: w.shape)
      let integers = ints.indices.map { Float(ints[$0] - Int64(q.params[paramIndex($0)].zeroPoint)) }
      let integerName = g.freshName(entry.site + "_tuning_integers")
      g.initializers[integerName] = Tensor(shape: w.shape, floats: integers)
      var scale = entry.scale
      var nodes: [Node] = []
      if case .perChannel(let axis) = q.granularity {
        let shapeName = g.freshName(entry.site + "_tuning_scale_shape"), reshaped = g.freshName(entry.site + "_tuning_scale")
        var dims = [Int64](repeating: 1, count: w.rank)
        dims[axis] = Int64(w.shape[axis])
        g.initializers[shapeName] = Tensor(shape: [w.rank], ints: dims)
        nodes.append(Node(name: reshaped + "_node", opType: "Reshape", inputs: [scale, shapeName], outputs: [reshaped]))
        scale = reshaped
      }
      nodes.append(Node(name: entry.node, opType: "Mul", inputs: [integerName, scale], outputs: [entry.output]))
      g.nodes.replaceSubrange(index...index, with: nodes)
      g.initializers[entry.site] = nil
      if let offset = entry.offset { g.initializers[offset] = nil }
      weights.append(IntegerWeight(site: entry.site, scale: entry.scale, integers: integers))
    }
    return (g, weights)
  }

  /// The tuned quantizers and the transformed graph whose weights sit on their new grids.
  static func tuned(
    _ trained: Graph, parameters: QATParameters, weights: [IntegerWeight], quantizers: [String: TensorQuantizer],
    transformed: Graph, record: QuantizerTuningRecord
  ) throws -> Outcome {
    var result = quantizers
    let activations = try QuantizationAwareTraining.quantizers(from: trained)
    for entry in parameters.quantizers where entry.kind == .activation {
      if let q = activations[entry.site] { result[entry.site] = q }
    }
    var graph = transformed
    for weight in weights {
      guard var q = result[weight.site], let w = graph.initializers[weight.site], let s = trained.initializers[weight.scale] else { continue }
      let scales = s.floats
      for c in q.params.indices { q.params[c].scale = scales[c] }
      let paramIndex = TensorQuantizer.paramIndex(q.granularity, for: w.shape)
      graph.initializers[weight.site] = Tensor(
        shape: w.shape, floats: weight.integers.indices.map { q.params[paramIndex($0)].scale * weight.integers[$0] })
      result[weight.site] = q
    }
    return Outcome(quantizers: result, graph: graph, record: record)
  }
}
