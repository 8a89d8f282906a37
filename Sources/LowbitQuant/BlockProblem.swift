import Foundation
import LowbitCore
import LowbitTrain

/// One block's rounding problem: the block's nodes as a `Trainer` graph whose quantized weights
/// are `SoftRounding` nodes over rounding variables V, the quantized model's inputs to the block
/// and the float model's outputs of it, per calibration batch.
struct BlockProblem {
  struct Rounded {
    var weight: String
    var variables: String
    var shape: [Int]
    var floor: [Float], scale: [Float], zero: [Float]
    /// Round-to-nearest as `h` in {0, 1}.
    var nearestUp: [Bool]
    var qmin: Float, qmax: Float
  }

  var trainer: Trainer
  let rounded: [Rounded]
  let inputNames: [String]
  let outputNames: [String]
  let inputs: [[Tensor]]
  let targets: [[Tensor]]
  /// The calibration samples over the batches.
  let samples: CalibrationSamples
  /// Learned `h` in {0, 1} per weight, set by `optimize`.
  var learnedUp: [[Bool]] = []

  /// `nodes` (in order) read `inputs` and hand on `outputs`; `quantizedInputs` and `targets`
  /// hold their values per calibration batch of `sizes[b]` samples.
  init(
    graph: Graph, nodes: [Node], inputs inputNames: [String], outputs outputNames: [String], weights: [String],
    quantizers: [String: TensorQuantizer], initializers: [String: Tensor], quantizedInputs: [[Tensor]],
    targets: [[Tensor]], sizes: [Int]
  ) throws {
    var nodes = nodes
    var sub = Graph(
      name: "block", nodes: [], inputs: inputNames.map { ValueInfo(name: $0, dtype: .float32) },
      outputs: outputNames.map { ValueInfo(name: $0) }, opsets: graph.opsets)
    sub.opsets[FakeQuantize.domain] = 1
    for node in nodes { for name in node.inputs where !name.isEmpty { if let t = initializers[name] { sub.initializers[name] = t } } }
    var rounded: [Rounded] = [], prefix: [Node] = []
    for name in weights {
      guard let w = initializers[name], let q = quantizers[name] else { continue }
      try q.validate(for: w.shape, name: name)
      let index = TensorQuantizer.paramIndex(q.granularity, for: w.shape)
      let values = w.floats
      var r = Rounded(
        weight: name, variables: graph.freshName(name + "_adaround_v"), shape: w.shape, floor: [], scale: [], zero: [],
        nearestUp: [], qmin: Float(q.grid.qmin), qmax: Float(q.grid.qmax))
      var v = [Float](repeating: 0, count: values.count)
      for e in values.indices {
        let p = q.params[index(e)]
        let x = values[e] / p.scale, f = x.rounded(.down)
        r.floor.append(f)
        r.scale.append(p.scale)
        r.zero.append(Float(p.zeroPoint))
        r.nearestUp.append(x.rounded(.toNearestOrEven) > f)
        v[e] = SoftRounding.initialVariable(fraction: min(max(x - f, 0), 0.999_999))
      }
      let floorName = graph.freshName(name + "_adaround_floor"), scaleName = graph.freshName(name + "_adaround_scale")
      let zeroName = graph.freshName(name + "_adaround_zero"), output = graph.freshName(name + "_adaround_soft")
      sub.initializers[r.variables] = Tensor(shape: w.shape, floats: v)
      sub.initializers[floorName] = Tensor(shape: w.shape, floats: r.floor)
      sub.initializers[scaleName] = Tensor(shape: w.shape, floats: r.scale)
      sub.initializers[zeroName] = Tensor(shape: w.shape, floats: r.zero)
      sub.initializers[name] = nil
      prefix.append(SoftRounding.node(
        name: output + "_node", variables: r.variables, floor: floorName, scale: scaleName, zeroPoint: zeroName,
        output: output, qmin: q.grid.qmin, qmax: q.grid.qmax))
      for k in nodes.indices { nodes[k].inputs = nodes[k].inputs.map { $0 == name ? output : $0 } }
      rounded.append(r)
    }
    sub.nodes = prefix + nodes
    trainer = try Trainer(sub)
    self.rounded = rounded
    self.inputNames = inputNames
    self.outputNames = outputNames
    self.inputs = quantizedInputs
    self.targets = targets
    samples = CalibrationSamples(sizes: sizes)
  }

  /// `count` calibration samples drawn uniformly: the block's inputs as feeds and its targets.
  func sample(_ count: Int, _ generator: inout SplitMix64) -> (feeds: [String: Tensor], targets: [Tensor]) {
    let picks = samples.draw(count, &generator)
    func gather(_ perBatch: [Tensor]) -> Tensor { CalibrationSamples.gather(perBatch, picks) }
    var feeds: [String: Tensor] = [:]
    for (name, values) in zip(inputNames, inputs) { feeds[name] = gather(values) }
    return (feeds, targets.map(gather))
  }

  /// The reconstruction loss of one forward pass and its gradient per output.
  func loss(_ tape: GradientTape, targets: [Tensor]) -> (Float, [String: Tensor]) {
    var total: Double = 0
    var gradients: [String: Tensor] = [:]
    for (name, target) in zip(outputNames, targets) {
      let (value, gradient) = OutputLoss.meanSquared(tape.values[name]!, target)
      total += value
      gradients[name] = gradient
    }
    return (Float(total), gradients)
  }

  /// The loss with every weight rounded hard: up where `up` says so.
  mutating func hardLoss(_ up: [[Bool]], _ batch: (feeds: [String: Tensor], targets: [Tensor])) throws -> Float {
    var p: [String: Tensor] = [:]
    for (r, u) in zip(rounded, up) {
      p[r.variables] = Tensor(shape: r.shape, floats: u.map { $0 ? SoftRounding.hardVariable : -SoftRounding.hardVariable })
    }
    trainer.parameters = p
    return loss(try trainer.forward(batch.feeds, mode: .inference), targets: batch.targets).0
  }

  /// Learns the rounding (AdaRound's loss, schedule and Adam step) and returns the block record
  /// (seconds left at 0).
  mutating func optimize(_ options: AdaRoundOptions) throws -> BlockRefinement {
    var generator = SplitMix64(seed: options.seed)
    let heldOut = sample(min(samples.count, 4 * options.blockBatchSize), &generator)
    var variables = Dictionary(uniqueKeysWithValues: rounded.map { ($0.variables, trainer.graph.initializers[$0.variables]!) })
    var adam = Adam()
    for t in 0..<options.iterations {
      let batch = sample(options.blockBatchSize, &generator)
      let tape = try trainer.forward(batch.feeds, mode: .inference)
      let (_, outputGradients) = loss(tape, targets: batch.targets)
      var gradients = try trainer.backward(tape, outputGradients: outputGradients)
      if let beta = AdaRound.beta(step: t, of: options.iterations, options) {
        for r in rounded {
          let v = variables[r.variables]!.floats
          var g = gradients[r.variables]!.floats
          for e in v.indices {
            let dh = SoftRounding.rectifiedSigmoidDerivative(v[e])
            if dh != 0 {
              g[e] += options.regularization * AdaRound.regularizerDerivative(SoftRounding.rectifiedSigmoid(v[e]), beta: beta) * dh
            }
          }
          gradients[r.variables] = Tensor(shape: r.shape, floats: g)
        }
      }
      try adam.update(&variables, gradients: gradients, learningRate: options.learningRate)
      trainer.parameters = variables
    }
    learnedUp = rounded.map { r in variables[r.variables]!.floats.map { $0 >= 0 } }
    let nearest = try hardLoss(rounded.map(\.nearestUp), heldOut)
    let learned = try hardLoss(learnedUp, heldOut)
    if learned > nearest {
      // The learned rounding lost on the held-out samples: never return worse than nearest.
      learnedUp = rounded.map(\.nearestUp)
      return BlockRefinement(layers: [], nearestError: nearest, adaRoundError: learned, flipped: 0, seconds: 0, keptNearest: true)
    }
    var flipped = 0, count = 0
    for (r, up) in zip(rounded, learnedUp) {
      for e in up.indices where hardValue(r, e, up[e]) != hardValue(r, e, r.nearestUp[e]) { flipped += 1 }
      count += up.count
    }
    return BlockRefinement(
      layers: [], nearestError: nearest, adaRoundError: learned, flipped: count == 0 ? 0 : Float(flipped) / Float(count),
      seconds: 0)
  }

  func hardValue(_ r: Rounded, _ e: Int, _ up: Bool) -> Float {
    r.scale[e] * (min(max(r.floor[e] + (up ? 1 : 0) + r.zero[e], r.qmin), r.qmax) - r.zero[e])
  }

  /// The learned quantized weights `s (clip(floor(w / s) + h + z, qmin, qmax) - z)` by weight name.
  func quantizedWeights() -> [(String, Tensor)] {
    zip(rounded, learnedUp).map { r, up in
      (r.weight, Tensor(shape: r.shape, floats: up.indices.map { hardValue(r, $0, up[$0]) }))
    }
  }
}
