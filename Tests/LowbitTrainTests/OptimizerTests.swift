import Foundation
import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct OptimizerTests {
  static let p0: [String: Tensor] = ["w": Tensor(shape: [2], floats: [1, -2]), "b": Tensor(shape: [1], floats: [0.5])]
  static let grads: [[String: Tensor]] = [
    ["w": Tensor(shape: [2], floats: [0.5, 1]), "b": Tensor(shape: [1], floats: [-1])],
    ["w": Tensor(shape: [2], floats: [-0.25, 2]), "b": Tensor(shape: [1], floats: [0.5])],
  ]

  @Test(arguments: [false, true])
  func sgdMatchesPyTorchsFormula(_ nesterov: Bool) throws {
    var sgd = SGD(momentum: 0.9, weightDecay: 0.1, nesterov: nesterov, noWeightDecay: ["b"])
    var p = Self.p0
    // Reference, element by element.
    var w: [Double] = [1, -2, 0.5], v: [Double] = [0, 0, 0]
    let lr = 0.1
    for (step, g) in Self.grads.enumerated() {
      try sgd.update(&p, gradients: g, learningRate: Float(lr))
      let gs = (g["w"]!.floats + g["b"]!.floats).map(Double.init)
      for i in 0..<3 {
        let d = gs[i] + (i < 2 ? 0.1 * w[i] : 0)
        v[i] = step == 0 ? d : 0.9 * v[i] + d
        w[i] -= lr * (nesterov ? d + 0.9 * v[i] : v[i])
      }
    }
    let got = (p["w"]!.floats + p["b"]!.floats).map(Double.init)
    for i in 0..<3 { #expect(abs(got[i] - w[i]) < 1e-6) }
  }

  @Test(arguments: [false, true])
  func adamMatchesTheFormula(_ decoupled: Bool) throws {
    var adam = Adam(weightDecay: 0.01, decoupledWeightDecay: decoupled)
    var p = Self.p0
    var w: [Double] = [1, -2, 0.5], m: [Double] = [0, 0, 0], v: [Double] = [0, 0, 0]
    let lr = 0.01
    for (step, g) in Self.grads.enumerated() {
      try adam.update(&p, gradients: g, learningRate: Float(lr))
      let gs = (g["w"]!.floats + g["b"]!.floats).map(Double.init)
      let t = Double(step + 1)
      for i in 0..<3 {
        var d = gs[i]
        if decoupled { w[i] *= 1 - lr * 0.01 } else { d += 0.01 * w[i] }
        m[i] = 0.9 * m[i] + 0.1 * d
        v[i] = 0.999 * v[i] + 0.001 * d * d
        w[i] -= lr * (m[i] / (1 - pow(0.9, t))) / ((v[i] / (1 - pow(0.999, t))).squareRoot() + 1e-8)
      }
    }
    let got = (p["w"]!.floats + p["b"]!.floats).map(Double.init)
    for i in 0..<3 { #expect(abs(got[i] - w[i]) < 1e-6) }
  }

  /// Saving the optimizer after one step and resuming gives the same parameters, bit for bit.
  @Test func stateSurvivesACodableRoundTrip() throws {
    func resumed<O: Optimizer & Equatable>(_ optimizer: O) throws {
      var straight = optimizer, p = Self.p0
      try straight.update(&p, gradients: Self.grads[0], learningRate: 0.1)
      let data = try JSONEncoder().encode(straight)
      var restored = try JSONDecoder().decode(O.self, from: data)
      #expect(restored == straight)
      var q = p
      try straight.update(&p, gradients: Self.grads[1], learningRate: 0.1)
      try restored.update(&q, gradients: Self.grads[1], learningRate: 0.1)
      #expect(p == q)
    }
    try resumed(SGD(momentum: 0.9, weightDecay: 1e-4, nesterov: true))
    try resumed(Adam(weightDecay: 1e-4, decoupledWeightDecay: true))
  }

  @Test func mismatchedGradientIsAnError() {
    var sgd = SGD()
    var p = Self.p0
    #expect(throws: LowbitError.self) {
      try sgd.update(&p, gradients: ["w": Tensor(shape: [3], repeating: 0)], learningRate: 0.1)
    }
  }
}

@Suite struct LearningRateScheduleTests {
  @Test func schedules() throws {
    #expect(LearningRateSchedule(base: 0.1).rate(atStep: 1000) == 0.1)
    let step = LearningRateSchedule(base: 0.1, decay: .step(every: 10, factor: 0.5))
    #expect(step.rate(atStep: 9) == 0.1)
    #expect(abs(step.rate(atStep: 10) - 0.05) < 1e-8)
    #expect(abs(step.rate(atStep: 25) - 0.025) < 1e-8)
    let multi = LearningRateSchedule(base: 1, decay: .multiStep(milestones: [3, 5], factor: 0.1))
    #expect(maxRelativeError([0, 3, 4, 5].map { multi.rate(atStep: $0) }, [1, 0.1, 0.1, 0.01]) < 1e-6)
    let cosine = LearningRateSchedule(base: 1, decay: .cosine(steps: 100, minimum: 0.1))
    #expect(cosine.rate(atStep: 0) == 1)
    #expect(abs(cosine.rate(atStep: 50) - 0.55) < 1e-6)
    #expect(abs(cosine.rate(atStep: 100) - 0.1) < 1e-6)
    #expect(abs(cosine.rate(atStep: 150) - 0.1) < 1e-6)
    let warm = LearningRateSchedule(base: 0.4, decay: .cosine(steps: 10, minimum: 0), warmupSteps: 4)
    #expect([0, 1, 2, 3].map { warm.rate(atStep: $0) } == [0.1, 0.2, Float(0.4) * 3 / 4, 0.4])
    #expect(warm.rate(atStep: 4) == 0.4)
    #expect(abs(warm.rate(atStep: 9) - 0.2) < 1e-6)
    let data = try JSONEncoder().encode(warm)
    #expect(try JSONDecoder().decode(LearningRateSchedule.self, from: data) == warm)
  }
}
