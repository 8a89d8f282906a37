import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

/// FakeQuantize (domain lowbit.train): forward values, the STE/LSQ gradients of eq. 37-39, the
/// per-channel reductions, finite differences and the projection that keeps scales positive.
@Suite struct FakeQuantizeTests {
  /// A graph `y = FakeQuantize(x, s, z)` with `s` and `z` as initializers (z omitted when nil).
  static func fakeQuantizeGraph(
    x: Tensor, scale: Tensor, offset: Tensor?, qmin: Int, qmax: Int, axis: Int? = nil, minimumScale: Float? = nil
  ) -> Graph {
    var initializers = ["s": scale]
    if let offset { initializers["z"] = offset }
    return Graph(
      nodes: [FakeQuantize.node(
        name: "fq", input: "x", scale: "s", offset: offset == nil ? nil : "z", output: "y",
        qmin: qmin, qmax: qmax, axis: axis, minimumScale: minimumScale)],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: x.shape.map { .fixed($0) })],
      outputs: [ValueInfo(name: "y")], initializers: initializers)
  }

  static func run(_ graph: Graph, _ x: Tensor) throws -> Tensor {
    try Trainer(graph).forward(["x": x], mode: .inference).value("y")!
  }

  @Test func forwardFollowsTheFormulaWithTiesToEvenAndClipping() throws {
    // s = 0.5, z = 3 (an offset of 2.6 rounds to 3), grid [0, 15]: x_hat = 0.5 (clip(round(2x) + 3, 0, 15) - 3).
    let xs: [Float] = [0.25, 0.75, -0.25, 1.25, 0, 0.1, -1.5, -1.75, -100, 6, 6.2, 100, .nan, .infinity, -.infinity]
    let expected: [Float] = [0, 1, 0, 1, 0, 0, -1.5, -1.5, -1.5, 6, 6, 6, 0, 6, -1.5]
    let g = Self.fakeQuantizeGraph(
      x: Tensor(shape: [xs.count], floats: xs), scale: Tensor(scalar: 0.5), offset: Tensor(scalar: 2.6), qmin: 0, qmax: 15)
    let y = try Self.run(g, Tensor(shape: [xs.count], floats: xs))
    #expect(y.floats == expected)
    for (x, e) in zip(xs, expected) {
      #expect(FakeQuantize.value(x, scale: 0.5, offset: 3, qmin: 0, qmax: 15) == e)
    }
  }

  @Test func perChannelKernelMatchesTheScalarFormula() throws {
    let x = randomTensor([2, 3, 4, 5], seed: 7, in: -3...3)
    let scales: [Float] = [0.05, 0.2, 0.013]
    let offsets: [Float] = [-3.4, 0, 2.5]  // rounded: -3, 0, 2
    let g = Self.fakeQuantizeGraph(
      x: x, scale: Tensor(shape: [3], floats: scales), offset: Tensor(shape: [3], floats: offsets),
      qmin: -8, qmax: 7, axis: 1)
    let y = try Self.run(g, x).floats
    for (i, v) in x.floats.enumerated() {
      let c = (i / 20) % 3
      let e = FakeQuantize.value(v, scale: scales[c], offset: FakeQuantize.roundedOffset(offsets[c]), qmin: -8, qmax: 7)
      #expect(y[i] == e)
    }
    #expect(FakeQuantize.roundedOffset(2.5) == 2 && FakeQuantize.roundedOffset(-3.4) == -3)
  }

  @Test func lawsOnTheGrid() {
    var gen = SeededGenerator(seed: 3)
    let s: Float = 0.037, zr: Float = -5, qmin = -128, qmax = 127
    for x in randomFloats(2000, in: -6...6, using: &gen) {
      let y = FakeQuantize.value(x, scale: s, offset: zr, qmin: qmin, qmax: qmax)
      // Idempotent: a grid point maps to itself.
      #expect(FakeQuantize.value(y, scale: s, offset: zr, qmin: qmin, qmax: qmax) == y)
      if FakeQuantize.region(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == .inside {
        #expect(abs(x - y) <= s / 2 * (1 + 1e-5))
      } else {
        #expect(y == s * (Float(x < 0 ? qmin : qmax) - zr))
      }
    }
  }

  /// Elements chosen away from rounding ties and clipping thresholds: `x/s + z_r` lands at
  /// `k + f` with `f` in [-0.35, 0.35] and `k` either inside [qmin+1, qmax-1] or beyond the
  /// ends by at least 2.
  static func awayFromBoundaries(count: Int, scale s: [Float], offset zr: [Float], channel: (Int) -> Int, qmin: Int, qmax: Int, seed: UInt64) -> [Float] {
    var g = SplitMix64(seed: seed)
    return (0..<count).map { i in
      let c = channel(i)
      let k: Int
      switch g.uniform(below: 5) {
      case 0: k = qmin - 2 - g.uniform(below: 4)
      case 1: k = qmax + 2 + g.uniform(below: 4)
      default: k = qmin + 1 + g.uniform(below: qmax - qmin - 1)
      }
      let f = 0.7 * g.unitFloat() - 0.35
      return (Float(k) + f - zr[c]) * s[c]
    }
  }

  @Test(arguments: [false, true])
  func gradientsEqualTheTableAndSumPerChannel(perChannel: Bool) throws {
    let shape = [3, 4, 6]
    let scales: [Float] = perChannel ? [0.1, 0.03, 0.25, 0.5] : [0.08]
    let offsets: [Float] = perChannel ? [2.2, -1, 0.6, 3] : [1.4]
    let rounded = offsets.map(FakeQuantize.roundedOffset)
    let channel = { (i: Int) in perChannel ? (i / 6) % 4 : 0 }
    let (qmin, qmax) = (-8, 7)
    let values = Self.awayFromBoundaries(count: 72, scale: scales, offset: rounded, channel: channel, qmin: qmin, qmax: qmax, seed: 11)
    let x = Tensor(shape: shape, floats: values)
    let pshape = perChannel ? [4] : []
    let graph = Self.fakeQuantizeGraph(
      x: x, scale: Tensor(shape: pshape, floats: scales), offset: Tensor(shape: pshape, floats: offsets),
      qmin: qmin, qmax: qmax, axis: perChannel ? 1 : nil)
    let trainer = try Trainer(graph)
    #expect(trainer.parameterNames == ["s", "z"])
    let r = randomTensor(shape, seed: 5)
    let tape = try trainer.forward(["x": x])
    let grads = try trainer.backward(tape, outputGradients: ["y": r], includeInputs: true)

    // The table, element by element, summed per channel in Double.
    var dx = [Float](repeating: 0, count: values.count)
    var ds = [Double](repeating: 0, count: scales.count), dz = ds
    var regions: Set<String> = []
    for (i, v) in values.enumerated() {
      let c = channel(i), s = scales[c], z = rounded[c], ri = Double(r.floats[i])
      dx[i] = r.floats[i] * FakeQuantize.inputGradient(v, scale: s, offset: z, qmin: qmin, qmax: qmax)
      ds[c] += ri * Double(FakeQuantize.scaleGradient(v, scale: s, offset: z, qmin: qmin, qmax: qmax))
      dz[c] += ri * Double(FakeQuantize.offsetGradient(v, scale: s, offset: z, qmin: qmin, qmax: qmax))
      regions.insert("\(FakeQuantize.region(v, scale: s, offset: z, qmin: qmin, qmax: qmax))")
    }
    #expect(regions.count == 3)
    #expect(grads["x"]!.floats == dx)
    #expect(maxRelativeError(grads["s"]!.floats, ds.map { Float($0) }) < 1e-6)
    #expect(maxRelativeError(grads["z"]!.floats, dz.map { Float($0) }) < 1e-6)
    #expect(grads["s"]!.shape == pshape && grads["z"]!.shape == pshape)

    // Central differences of the surrogate s (clip(x/s + c + z + c_z, qmin, qmax) - z - c_z), the
    // rounding residuals c = round(x/s) - x/s and c_z = round(z) - z frozen at the point: the
    // function whose exact derivatives the STE/LSQ gradients are.
    let c0 = values.enumerated().map { i, v in Double((v / scales[channel(i)]).rounded(.toNearestOrEven)) - Double(v / scales[channel(i)]) }
    let cz = zip(rounded, offsets).map { Double($0) - Double($1) }
    func loss(_ xv: [Double], _ sv: [Double], _ zv: [Double]) -> Double {
      var total = 0.0
      for i in xv.indices {
        let c = channel(i)
        let zr = zv[c] + cz[c]
        let q = min(max(xv[i] / sv[c] + c0[i] + zr, Double(qmin)), Double(qmax))
        total += Double(r.floats[i]) * sv[c] * (q - zr)
      }
      return total
    }
    let x0 = values.map(Double.init), s0 = scales.map(Double.init), z0 = offsets.map(Double.init)
    let h = 1e-4
    func central(_ f: (Double) -> Double) -> Double { (f(h) - f(-h)) / (2 * h) }
    for i in x0.indices {
      let fd = central { d in var v = x0; v[i] += d; return loss(v, s0, z0) }
      #expect(abs(fd - Double(grads["x"]!.floats[i])) < 1e-4)
    }
    for c in s0.indices {
      let fdS = central { d in var v = s0; v[c] += d * s0[c]; return loss(x0, v, z0) } / s0[c]
      let fdZ = central { d in var v = z0; v[c] += d; return loss(x0, s0, v) }
      #expect(abs(fdS - Double(grads["s"]!.floats[c])) <= 1e-3 * max(1, abs(fdS)), "ds[\(c)] \(grads["s"]!.floats[c]) vs fd \(fdS)")
      #expect(abs(fdZ - Double(grads["z"]!.floats[c])) <= 1e-3 * max(1, abs(fdZ)), "dz[\(c)] \(grads["z"]!.floats[c]) vs fd \(fdZ)")
    }
  }

  @Test func gradientScaleMultipliesOnlyTheScaleAndOffsetGradients() throws {
    let x = randomTensor([2, 3], seed: 31, in: -2...2)
    func gradients(_ factor: Float?) throws -> [String: Tensor] {
      var g = Self.fakeQuantizeGraph(x: x, scale: Tensor(scalar: 0.02), offset: Tensor(scalar: 1), qmin: -8, qmax: 7)
      if let factor { g.nodes[0].attributes["gradient_scale"] = .float(factor) }
      let trainer = try Trainer(g)
      return try trainer.backward(try trainer.forward(["x": x]), outputGradients: ["y": randomTensor([2, 3], seed: 32)], includeInputs: true)
    }
    let plain = try gradients(nil), scaled = try gradients(0.25)
    #expect(scaled["x"]!.floats == plain["x"]!.floats)
    #expect(scaled["s"]!.floats == plain["s"]!.floats.map { $0 * 0.25 })
    #expect(scaled["z"]!.floats == plain["z"]!.floats.map { $0 * 0.25 })
    #expect(plain["s"]!.floats[0] != 0 && plain["z"]!.floats[0] != 0)
  }

  @Test func exactDerivativesWhereTheStaircaseHasThem() {
    let s: Float = 0.1, zr: Float = 2, qmin = -8, qmax = 7
    // Clipped: x_hat = s (qmin - z) or s (qmax - z), so d x_hat / d s is exact there.
    for x: Float in [-3, -1.4, 0.9, 4] {
      let h: Float = 1e-3
      let fd = (FakeQuantize.value(x, scale: s + h, offset: zr, qmin: qmin, qmax: qmax)
        - FakeQuantize.value(x, scale: s - h, offset: zr, qmin: qmin, qmax: qmax)) / (2 * h)
      #expect(FakeQuantize.region(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) != .inside)
      #expect(abs(fd - FakeQuantize.scaleGradient(x, scale: s, offset: zr, qmin: qmin, qmax: qmax)) < 1e-3)
      #expect(FakeQuantize.inputGradient(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == 0)
    }
    // Inside: the staircase rises by exactly k steps over k steps, the STE's slope of 1.
    for x: Float in [-0.83, -0.41, 0.04, 0.33] {
      let k: Float = 2
      let secant = (FakeQuantize.value(x + k * s, scale: s, offset: zr, qmin: qmin, qmax: qmax)
        - FakeQuantize.value(x - k * s, scale: s, offset: zr, qmin: qmin, qmax: qmax)) / (2 * k * s)
      #expect(abs(secant - 1) < 1e-5)
      #expect(FakeQuantize.inputGradient(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == 1)
      #expect(FakeQuantize.offsetGradient(x, scale: s, offset: zr, qmin: qmin, qmax: qmax) == 0)
    }
  }

  @Test func weightThroughGemmGetsTheMaskedGemmGradient() throws {
    // y = x W_hat^T with W_hat = FakeQuantize(W) per output channel: dW = mask * (dY^T x).
    let w = randomTensor([3, 5], seed: 21)
    let scales: [Float] = [0.05, 0.1, 0.02]  // the last one clips most of its row
    let graph = Graph(
      nodes: [
        FakeQuantize.node(name: "fq", input: "w", scale: "s", offset: nil, output: "w_hat", qmin: -8, qmax: 7, axis: 0),
        Node(name: "fc", opType: "Gemm", inputs: ["x", "w_hat"], outputs: ["y"], attributes: ["transB": .int(1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(4), .fixed(5)])],
      outputs: [ValueInfo(name: "y")], initializers: ["w": w, "s": Tensor(shape: [3], floats: scales)])
    let trainer = try Trainer(graph)
    #expect(trainer.parameterNames == ["s", "w"])
    let x = randomTensor([4, 5], seed: 22), r = randomTensor([4, 3], seed: 23)
    let grads = try trainer.backward(try trainer.forward(["x": x]), outputGradients: ["y": r])
    for o in 0..<3 {
      for i in 0..<5 {
        var dwhat = 0.0
        for n in 0..<4 { dwhat += Double(r.floats[n * 3 + o]) * Double(x.floats[n * 5 + i]) }
        let mask = FakeQuantize.inputGradient(w.floats[o * 5 + i], scale: scales[o], offset: 0, qmin: -8, qmax: 7)
        #expect(abs(grads["w"]!.floats[o * 5 + i] - Float(dwhat) * mask) < 1e-5)
      }
    }
  }

  @Test func projectionKeepsScalesPositiveAndOffsetsOnTheGrid() throws {
    let x = randomTensor([2, 4], seed: 2)
    let graph = Self.fakeQuantizeGraph(
      x: x, scale: Tensor(shape: [2], floats: [0.1, 0.2]), offset: Tensor(shape: [2], floats: [3, 4]),
      qmin: 0, qmax: 15, axis: 0, minimumScale: 1e-4)
    var trainer = try Trainer(graph)
    trainer.parameters = ["s": Tensor(shape: [2], floats: [-0.5, .nan]), "z": Tensor(shape: [2], floats: [-2.7, 19])]
    // An unprojected scale is an error, not a silent grid.
    #expect(throws: LowbitError.self) { try trainer.forward(["x": x]) }
    trainer.projectParameters()
    #expect(trainer.parameters["s"]!.floats == [1e-4, 1e-4])
    #expect(trainer.parameters["z"]!.floats == [0, 15])
    _ = try trainer.forward(["x": x])

    // A step whose update would take the scale to -0.9 leaves it at the floor.
    var plain = try Trainer(Self.fakeQuantizeGraph(
      x: Tensor(shape: [4, 2], repeating: 0), scale: Tensor(scalar: 0.1), offset: nil, qmin: -8, qmax: 7))
    let feeds = ["x": Tensor(shape: [4, 2], floats: [3, -3, 2, -2, 1, 1, -1, 0.5])], labels = [0, 1, 0, 0]
    let tape = try plain.forward(feeds)
    let loss = try SoftmaxCrossEntropy(logits: tape.value("y")!, labels: labels)
    let g = try plain.backward(tape, outputGradients: ["y": loss.gradient])["s"]!.floats[0]
    #expect(g != 0)
    var sgd = SGD(momentum: 0)
    _ = try plain.step(feeds: feeds, labels: labels, optimizer: &sgd, learningRate: 1 / g)
    #expect(plain.parameters["s"]!.floats == [FakeQuantize.defaultMinimumScale])
  }

  @Test func trainerRejectsUnknownTrainingOps() throws {
    var graph = Self.fakeQuantizeGraph(x: Tensor(shape: [2], repeating: 0), scale: Tensor(scalar: 1), offset: nil, qmin: 0, qmax: 255)
    graph.nodes[0].domain = "lowbit.other"
    #expect(throws: LowbitError.self) { try Trainer(graph) }
    graph.nodes[0].domain = ""  // FakeQuantize is not an ONNX op
    #expect(throws: LowbitError.self) { try Trainer(graph) }
  }
}
