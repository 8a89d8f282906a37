import Foundation
import LowbitCore
import LowbitQuant
import Testing

@Suite struct DeploymentTargetTests {
  /// TensorRT's INT8 weights: [-127, 127], the scale of a symmetric range `a` is `a / 127`.
  @Test func narrowGridDropsTheLowestInteger() throws {
    let narrow = IntegerGrid(bits: 8, signed: true, narrow: true)
    #expect(narrow.qmin == -127 && narrow.qmax == 127 && narrow.steps == 254)
    #expect(IntegerGrid(bits: 8, signed: false, narrow: true).qmin == 0)  // unsigned grids have nothing to drop
    let p = UniformQuantizer.params(lower: -2, upper: 1, grid: narrow, symmetric: true)
    #expect(p.scale == 2 / 127 && p.zeroPoint == 0)
    let q = TensorQuantizer(grid: narrow, symmetric: true, granularity: .perTensor, params: [p])
    #expect(q.quantize([-2.5, -2, 0.3, 9], shape: [4]) == [-127, -127, 19, 127])
    // A grid read back from JSON written before `narrow` existed is the full grid.
    let old = try JSONDecoder().decode(IntegerGrid.self, from: Data(#"{"bits": 8, "signed": true}"#.utf8))
    #expect(old == IntegerGrid(bits: 8, signed: true))
    #expect(throws: DecodingError.self) { try JSONDecoder().decode(IntegerGrid.self, from: Data(#"{"bits": 40, "signed": true}"#.utf8)) }
  }

  @Test func aTargetsRequirementsAreItsDefaults() throws {
    let trt = QuantConfig(target: .tensorrt)
    #expect(trt.activationSymmetric && trt.weightNarrowRange && !trt.integerBiases && !trt.inputPerChannel)
    #expect(trt.weightGrid.qmin == -127 && trt.activationGrid.qmin == -128)
    try trt.validate()
    #expect(QuantConfig(target: .ort) == QuantConfig())
    for target in DeploymentTarget.allCases { try QuantConfig(target: target).validate() }
    // From a file: absent fields take the target's defaults; the command line's target wins.
    let file = Data(#"{"target": "tensorrt", "per_channel": true}"#.utf8)
    let decoded = try JSONDecoder().decode(QuantConfig.self, from: file)
    var expected = QuantConfig(target: .tensorrt)
    expected.perChannel = true
    #expect(decoded == expected)
    let decoder = JSONDecoder()
    decoder.userInfo[QuantConfig.targetOverride] = DeploymentTarget.qnn
    #expect(try decoder.decode(QuantConfig.self, from: file).target == .qnn)
  }

  @Test func settingsATargetCannotRunAreRefusedAllAtOnce() throws {
    var c = QuantConfig(target: .tensorrt)
    c.weightBits = 4
    c.activationSymmetric = false
    c.integerBiases = true
    #expect(DeploymentTarget.tensorrt.violations(of: c).count == 3)
    #expect(DeploymentTarget.ort.violations(of: c).isEmpty)
    do {
      try c.validate()
      Issue.record("validate accepted settings TensorRT cannot run")
    } catch {
      let e = try #require(error as? LowbitError)
      let message = e.message
      #expect(e.kind == .invalidArgument)
      #expect(message.hasPrefix("target tensorrt cannot run these settings: "))
      #expect(message.contains("8-bit weights") && message.contains("zero point 0") && message.contains("INT32"))
    }
    // Weight-only settings do not trip the activation rules.
    var weightsOnly = QuantConfig(target: .tensorrt)
    weightsOnly.quantizeActivations = false
    weightsOnly.activationBits = 4
    try weightsOnly.validate()
    var qnn = QuantConfig(target: .qnn)
    qnn.activationBits = 16
    qnn.opset = 21
    try qnn.validate()
    qnn.activationBits = 4
    #expect(throws: LowbitError.self) { try qnn.validate() }
  }
}
