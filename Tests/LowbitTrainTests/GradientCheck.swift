import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

/// A node writing `y` (or `outputs`).
func node(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], outputs: [String] = ["y"]) -> Node {
  Node(name: op.lowercased(), opType: op, inputs: inputs, outputs: outputs, attributes: attributes)
}

/// A graph whose runtime inputs are `inputs` (in order) and whose initializers are `constants`.
func graph(
  _ nodes: [Node], inputs: [(String, Tensor)], constants: [String: Tensor] = [:], outputs: [String] = ["y"], opset: Int = 17
) -> Graph {
  Graph(
    nodes: nodes, inputs: inputs.map { ValueInfo(name: $0.0, dtype: $0.1.dtype, shape: $0.1.shape.map { .fixed($0) }) },
    outputs: outputs.map { ValueInfo(name: $0) }, initializers: constants, opsets: ["": opset])
}

/// `count` distinct values spread over [-1, 1] in a seeded order, at least `2 / count` apart:
/// inputs for ops with kinks (max, relu) where a finite-difference step must not cross a tie.
func distinctTensor(_ shape: [Int], seed: UInt64) -> Tensor {
  let n = shape.reduce(1, *)
  var g = SeededGenerator(seed: seed)
  var values = (0..<n).map { -1 + 2 * (Float($0) + 0.5) / Float(n) }
  values.shuffle(using: &g)
  return Tensor(shape: shape, floats: values)
}

/// Checks `Trainer.backward` against central finite differences of
/// `L = sum_i R_i * y_i` (R fixed, seeded; L accumulated in Double) for every float runtime input
/// and every parameter of `graph`. The step divides by the difference of the perturbed Float
/// values actually used. Returns the largest relative error `max |analytic - fd| / max |fd|`.
@discardableResult
func checkGradients(
  _ graph: Graph, feeds: [String: Tensor], mode: ExecutionMode = .training, step h: Float = 1e-2,
  tolerance: Float = 1e-3, label: String, sourceLocation: SourceLocation = #_sourceLocation
) throws -> Float {
  let trainer = try Trainer(graph)
  let output = graph.outputs[0].name
  let tape = try trainer.forward(feeds, mode: mode)
  let y = tape.value(output)!
  let r = randomTensor(y.shape, seed: 99)
  let analytic = try trainer.backward(tape, outputGradients: [output: r], includeInputs: true)
  func loss(_ feeds: [String: Tensor], _ t: Trainer) throws -> Double {
    let out = try t.forward(feeds, mode: mode).value(output)!.floats
    var s = 0.0
    for (a, b) in zip(out, r.floats) { s += Double(a) * Double(b) }
    return s
  }
  var worst: Float = 0
  let names = feeds.keys.filter { feeds[$0]!.dtype.isFloatingPoint }.sorted() + trainer.parameterNames
  #expect(!names.isEmpty, sourceLocation: sourceLocation)
  for name in names {
    let isFeed = feeds[name] != nil
    let base = isFeed ? feeds[name]! : trainer.parameters[name]!
    var fd = [Float](repeating: 0, count: base.count)
    for i in 0..<base.count {
      var values = base.floats
      let xp = values[i] + h, xm = values[i] - h
      var sides: [Double] = []
      for v in [xp, xm] {
        values[i] = v
        let t = Tensor(shape: base.shape, floats: values)
        if isFeed {
          var f = feeds
          f[name] = t
          sides.append(try loss(f, trainer))
        } else {
          var copy = trainer
          copy.parameters = [name: t]
          sides.append(try loss(feeds, copy))
        }
      }
      fd[i] = Float((sides[0] - sides[1]) / (Double(xp) - Double(xm)))
    }
    guard let a = analytic[name] else {
      Issue.record("no gradient for \(name)", sourceLocation: sourceLocation)
      continue
    }
    #expect(a.shape == base.shape, sourceLocation: sourceLocation)
    let err = maxRelativeError(a.floats, fd)
    #expect(err <= tolerance, "\(label): d/d\(name) relative error \(err)", sourceLocation: sourceLocation)
    worst = max(worst, err)
  }
  print("gradient check \(label): max relative error \(worst)")
  return worst
}
