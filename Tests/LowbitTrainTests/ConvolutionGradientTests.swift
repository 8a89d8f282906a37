import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct ConvolutionGradientTests {
  struct Case: CustomTestStringConvertible, Sendable {
    var name: String
    var input: [Int]
    var weight: [Int]
    var attributes: [String: Attribute]
    var bias = true
    var testDescription: String { name }
  }

  static let cases: [Case] = [
    Case(name: "3x3 pad 1", input: [2, 3, 5, 5], weight: [4, 3, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
    Case(name: "stride 2 pad 1", input: [2, 2, 7, 6], weight: [3, 2, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
    Case(name: "groups 2", input: [2, 4, 5, 5], weight: [6, 2, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(2)]),
    Case(name: "depthwise stride 2", input: [2, 3, 6, 6], weight: [3, 1, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(3), "strides": .ints([2, 2])]),
    Case(name: "dilation 2", input: [1, 2, 7, 7], weight: [2, 2, 3, 3],
         attributes: ["pads": .ints([2, 2, 2, 2]), "dilations": .ints([2, 2])]),
    Case(name: "batch 1, asymmetric pads, stride (2,1)", input: [1, 2, 6, 5], weight: [3, 2, 2, 3],
         attributes: ["pads": .ints([1, 0, 0, 2]), "strides": .ints([2, 1])]),
    Case(name: "1x1 no bias", input: [2, 4, 3, 3], weight: [5, 4, 1, 1], attributes: [:], bias: false),
    Case(name: "SAME_UPPER stride 2", input: [1, 2, 5, 5], weight: [2, 2, 3, 3],
         attributes: ["auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])]),
    Case(name: "1-D", input: [2, 2, 9], weight: [3, 2, 3], attributes: ["pads": .ints([1, 1]), "strides": .ints([2])]),
  ]

  @Test(arguments: cases)
  func convMatchesFiniteDifferences(_ c: Case) throws {
    let x = randomTensor(c.input, seed: 1), w = randomTensor(c.weight, seed: 2), b = randomTensor([c.weight[0]], seed: 3)
    let inputs = c.bias ? [("x", x), ("w", w), ("b", b)] : [("x", x), ("w", w)]
    let g = graph([node("Conv", inputs.map(\.0), c.attributes)], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), label: "Conv \(c.name)")
  }

  @Test func weightsHeldAsInitializersAreParameters() throws {
    let g = graph(
      [node("Conv", ["x", "w", "b"], ["pads": .ints([1, 1, 1, 1])])], inputs: [("x", randomTensor([1, 2, 4, 4], seed: 1))],
      constants: ["w": randomTensor([3, 2, 3, 3], seed: 2), "b": randomTensor([3], seed: 3)])
    let trainer = try Trainer(g)
    #expect(trainer.parameterNames == ["b", "w"])
    try checkGradients(g, feeds: ["x": randomTensor([1, 2, 4, 4], seed: 1)], label: "Conv parameters")
  }

  /// Batches large enough to split over threads and into chunks of several images (the gradient
  /// is computed chunk by chunk) agree with direct sums over every image, tap and position.
  @Test(arguments: [
    Case(name: "9 images, 3x3 pad 1", input: [9, 8, 9, 9], weight: [8, 8, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
    Case(name: "12 images, groups 2, stride 2", input: [12, 8, 10, 9], weight: [8, 4, 3, 3],
         attributes: ["pads": .ints([1, 0, 1, 1]), "group": .int(2), "strides": .ints([2, 2])]),
  ])
  func chunkedBatchesMatchDirectSums(_ c: Case) throws {
    let x = randomTensor(c.input, seed: 4), w = randomTensor(c.weight, seed: 5)
    let g = graph([node("Conv", ["x", "w"], c.attributes)], inputs: [("x", x), ("w", w)])
    let trainer = try Trainer(g)
    let tape = try trainer.forward(["x": x, "w": w])
    let y = tape.value("y")!
    let dy = randomTensor(y.shape, seed: 6)
    let grads = try trainer.backward(tape, outputGradients: ["y": dy], includeInputs: true)
    // Direct sums in Double.
    let (n, ch, h, wd) = (c.input[0], c.input[1], c.input[2], c.input[3])
    let (m, cg, kh, kw) = (c.weight[0], c.weight[1], c.weight[2], c.weight[3])
    let (oh, ow) = (y.shape[2], y.shape[3])
    let groups: Int = { if case .int(let v)? = c.attributes["group"] { return v }; return 1 }()
    let strides: [Int] = { if case .ints(let v)? = c.attributes["strides"] { return v }; return [1, 1] }()
    let pads: [Int] = { if case .ints(let v)? = c.attributes["pads"] { return v }; return [0, 0, 0, 0] }()
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
    let xs = x.floats, ws = w.floats, dys = dy.floats
    for b in 0..<n {
      for o in 0..<m {
        let gi = o / (m / groups)
        for oy in 0..<oh {
          for ox in 0..<ow {
            let d = Double(dys[((b * m + o) * oh + oy) * ow + ox])
            for cl in 0..<cg {
              let ci = gi * cg + cl
              for ki in 0..<kh {
                let iy = oy * strides[0] - pads[0] + ki
                guard iy >= 0 && iy < h else { continue }
                for kj in 0..<kw {
                  let ix = ox * strides[1] - pads[1] + kj
                  guard ix >= 0 && ix < wd else { continue }
                  let xi = ((b * ch + ci) * h + iy) * wd + ix, wi = ((o * cg + cl) * kh + ki) * kw + kj
                  dx[xi] += Double(ws[wi]) * d
                  dw[wi] += Double(xs[xi]) * d
                }
              }
            }
          }
        }
      }
    }
    #expect(maxRelativeError(grads["x"]!.floats, dx.map { Float($0) }) < 1e-5)
    #expect(maxRelativeError(grads["w"]!.floats, dw.map { Float($0) }) < 1e-5)
    // The same call twice gives the same bits.
    let again = try trainer.backward(tape, outputGradients: ["y": dy], includeInputs: true)
    #expect(again["x"]!.floats == grads["x"]!.floats && again["w"]!.floats == grads["w"]!.floats)
  }
}
