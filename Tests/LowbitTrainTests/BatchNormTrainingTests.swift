import Foundation
import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct BatchNormTrainingTests {
  static func bnGraph(_ x: Tensor, momentum: Float? = nil, parametersAsInitializers: Bool = false) -> (Graph, [String: Tensor]) {
    let c = x.shape[1]
    let scale = Tensor(shape: [c], floats: randomTensor([c], seed: 31).floats.map { $0 + 1.5 })
    let bias = randomTensor([c], seed: 32)
    var attributes: [String: Attribute] = ["epsilon": .float(1e-3)]
    if let momentum { attributes["momentum"] = .float(momentum) }
    var constants = [
      "mean": randomTensor([c], seed: 33, in: -0.2...0.2), "var": randomTensor([c], seed: 34, in: 0.5...1.5),
    ]
    var inputs = [("x", x)]
    if parametersAsInitializers {
      constants["scale"] = scale
      constants["B"] = bias
    } else {
      inputs += [("scale", scale), ("B", bias)]
    }
    let g = graph([node("BatchNormalization", ["x", "scale", "B", "mean", "var"], attributes)], inputs: inputs, constants: constants)
    return (g, Dictionary(uniqueKeysWithValues: inputs))
  }

  @Test(arguments: [[4, 3, 5, 5], [1, 3, 4, 4], [6, 3], [3, 2, 7]])
  func trainingModeGradientMatchesFiniteDifferences(_ shape: [Int]) throws {
    let (g, feeds) = Self.bnGraph(randomTensor(shape, seed: 30, in: -2...3))
    try checkGradients(g, feeds: feeds, mode: .training, label: "BatchNormalization (training)")
  }

  @Test func inferenceModeGradientMatchesFiniteDifferences() throws {
    let (g, feeds) = Self.bnGraph(randomTensor([2, 3, 4, 4], seed: 30))
    try checkGradients(g, feeds: feeds, mode: .inference, label: "BatchNormalization (inference)")
  }

  @Test func runningStatisticsMoveWithMomentum() throws {
    let x = randomTensor([4, 3, 5, 5], seed: 35, in: -1...3)
    for (momentum, unbiased) in [(Float?.none, true), (0.8, true), (0.8, false)] {
      let (g, feeds) = Self.bnGraph(x, momentum: momentum, parametersAsInitializers: true)
      var trainer = try Trainer(g)
      trainer.unbiasedRunningVariance = unbiased
      #expect(trainer.parameterNames == ["B", "scale"])
      #expect(trainer.bufferNames == ["mean", "var"])
      let tape = try trainer.forward(feeds, mode: .training)
      let mom = Double(momentum ?? 0.9), m = 4 * 25
      let oldMean = g.initializers["mean"]!.floats, oldVar = g.initializers["var"]!.floats
      var expectedMean: [Float] = [], expectedVar: [Float] = []
      for c in 0..<3 {
        var values: [Double] = []
        for n in 0..<4 { for i in 0..<25 { values.append(Double(x.floats[(n * 3 + c) * 25 + i])) } }
        let mu = values.reduce(0, +) / Double(m)
        let v = values.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(unbiased ? m - 1 : m)
        expectedMean.append(Float(mom * Double(oldMean[c]) + (1 - mom) * mu))
        expectedVar.append(Float(mom * Double(oldVar[c]) + (1 - mom) * v))
      }
      #expect(maxRelativeError(tape.runningStatistics["mean"]!.floats, expectedMean) < 1e-5)
      #expect(maxRelativeError(tape.runningStatistics["var"]!.floats, expectedVar) < 1e-5)
      // The output is normalized with the batch statistics: per channel mean B, std ~ |scale|.
      let y = tape.value("y")!.floats
      let b = g.initializers["B"]!.floats
      for c in 0..<3 {
        var s = 0.0
        for n in 0..<4 { for i in 0..<25 { s += Double(y[(n * 3 + c) * 25 + i]) } }
        #expect(abs(s / Double(m) - Double(b[c])) < 1e-4)
      }
      trainer.updateStatistics(from: tape)
      #expect(trainer.graph.initializers["mean"] == tape.runningStatistics["mean"])
      // Inference mode leaves the statistics alone.
      #expect(try trainer.forward(feeds, mode: .inference).runningStatistics.isEmpty)
    }
  }
}

@Suite struct SoftmaxCrossEntropyTests {
  @Test func valueMatchesTheFormula() throws {
    let logits = Tensor(shape: [2, 3], floats: [1, 2, 3, 1, 1, 1])
    let loss = try SoftmaxCrossEntropy(logits: logits, labels: [2, 0])
    let expected = ((log(exp(1.0) + exp(2.0) + exp(3.0)) - 3) + log(3.0)) / 2
    #expect(abs(Double(loss.value) - expected) < 1e-6)
    #expect(loss.correct == 2)  // the all-equal row counts for its first class
    // Gradient: (softmax - onehot) / N.
    let total: Double = exp(1.0) + exp(2.0) + exp(3.0)
    let s: [Double] = [exp(1.0) / total, exp(2.0) / total, exp(3.0) / total]
    let rows: [Double] = [s[0], s[1], s[2] - 1, 1.0 / 3 - 1, 1.0 / 3, 1.0 / 3]
    let expectedGradient: [Float] = rows.map { Float($0 / 2) }
    #expect(maxRelativeError(loss.gradient.floats, expectedGradient) < 1e-6)
  }

  @Test func gradientMatchesFiniteDifferences() throws {
    let logits = randomTensor([5, 7], seed: 40, in: -3...3)
    let labels = [0, 6, 3, 3, 1]
    let loss = try SoftmaxCrossEntropy(logits: logits, labels: labels)
    var fd = [Float](repeating: 0, count: logits.count)
    let h: Float = 1e-2
    for i in 0..<logits.count {
      var plus = logits.floats, minus = logits.floats
      plus[i] += h
      minus[i] -= h
      let lp = try SoftmaxCrossEntropy(logits: Tensor(shape: [5, 7], floats: plus), labels: labels).value
      let lm = try SoftmaxCrossEntropy(logits: Tensor(shape: [5, 7], floats: minus), labels: labels).value
      fd[i] = (lp - lm) / (plus[i] - minus[i])
    }
    let err = maxRelativeError(loss.gradient.floats, fd)
    print("gradient check SoftmaxCrossEntropy: max relative error \(err)")
    #expect(err < 1e-3)
  }

  @Test func largeLogitsStayFinite() throws {
    let loss = try SoftmaxCrossEntropy(logits: Tensor(shape: [2, 2], floats: [1000, 0, -1000, 1000]), labels: [1, 0])
    #expect(abs(loss.value - 1500) < 1e-2)  // (1000 + 2000) / 2
    #expect(loss.gradient.floats.allSatisfy { $0.isFinite })
    #expect(maxRelativeError(loss.gradient.floats, [0.5, -0.5, -0.5, 0.5]) < 1e-6)
  }

  @Test func badLabelsAreErrors() {
    #expect(throws: LowbitError.self) { try SoftmaxCrossEntropy(logits: Tensor(shape: [1, 3], repeating: 0), labels: [3]) }
    #expect(throws: LowbitError.self) { try SoftmaxCrossEntropy(logits: Tensor(shape: [2, 3], repeating: 0), labels: [0]) }
    #expect(throws: LowbitError.self) { try SoftmaxCrossEntropy(logits: Tensor(shape: [3], repeating: 0), labels: [0]) }
  }
}
