import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

/// Gradients of the ops that copy elements (Slice, Split, Pad, Tile), of PRelu, Max / Min, Abs
/// and Reciprocal, each against central finite differences.
@Suite struct RoutingGradientTests {
  static let x = randomTensor([2, 3, 4, 5], seed: 41)
  static func ints(_ values: [Int64]) -> Tensor { Tensor(shape: [values.count], ints: values) }

  /// A negative start, a negative step and a clamped end (opset 13 inputs), and the opset-1 form.
  @Test func slice() throws {
    let g = graph([node("Slice", ["x", "starts", "ends", "axes", "steps"])], inputs: [("x", Self.x)], constants: [
      "starts": Self.ints([-1, 1]), "ends": Self.ints([-100, 99]), "axes": Self.ints([3, 1]), "steps": Self.ints([-2, 1]),
    ])
    try checkGradients(g, feeds: ["x": Self.x], label: "Slice")
    let old = graph([node("Slice", ["x"], ["starts": .ints([1]), "ends": .ints([3]), "axes": .ints([2])])],
                    inputs: [("x", Self.x)], opset: 9)
    try checkGradients(old, feeds: ["x": Self.x], label: "Slice opset 9")
  }

  /// Uneven parts; the middle part is unused (no gradient reaches it), the others swap places.
  @Test func split() throws {
    let g = graph([
      node("Split", ["x", "sizes"], ["axis": .int(3)], outputs: ["p0", "p1", "p2"]),
      node("Concat", ["p2", "p0"], ["axis": .int(3)]),
    ], inputs: [("x", Self.x)], constants: ["sizes": Self.ints([1, 3, 1])])
    try checkGradients(g, feeds: ["x": Self.x], label: "Split")
  }

  /// Padding gets no gradient whatever it is filled with; reflected and edge copies add up.
  @Test(arguments: ["constant", "reflect", "edge"])
  func pad(_ mode: String) throws {
    let pads = Self.ints([0, 0, 1, 2, 0, 1, 2, 1])
    let g = graph([node("Pad", ["x", "pads", "value"], ["mode": .string(mode)])], inputs: [("x", Self.x)],
                  constants: ["pads": pads, "value": Tensor(scalar: 5)])
    try checkGradients(g, feeds: ["x": Self.x], label: "Pad \(mode)")
  }

  @Test func padBeforeOpset11() throws {
    let g = graph([node("Pad", ["x"], ["pads": .ints([0, 1, 0, 2, 0, 0, 1, 0]), "value": .float(-3)])],
                  inputs: [("x", Self.x)], opset: 9)
    try checkGradients(g, feeds: ["x": Self.x], label: "Pad opset 9")
  }

  @Test func tile() throws {
    let g = graph([node("Tile", ["x", "repeats"])], inputs: [("x", Self.x)], constants: ["repeats": Self.ints([1, 2, 1, 3])])
    try checkGradients(g, feeds: ["x": Self.x], label: "Tile")
  }

  /// Per-channel slope, a trained parameter; inputs at least 0.05 from the kink at 0.
  @Test func prelu() throws {
    let x = Tensor(shape: [2, 3, 2, 2], floats: distinctTensor([2, 3, 2, 2], seed: 42).floats.map { $0 * 3 })
    let slope = Tensor(shape: [3, 1, 1], floats: [0.1, 0.25, -0.2])
    let g = graph([node("PRelu", ["x", "slope"])], inputs: [("x", x)], constants: ["slope": slope])
    #expect(try Trainer(g).parameterNames == ["slope"])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "PRelu")
  }

  /// Three operands, broadcast, no ties: each element's gradient reaches the operand it came from.
  @Test(arguments: ["Max", "Min"])
  func extremum(_ op: String) throws {
    let a = distinctTensor([3, 4], seed: 43)
    let b = Tensor(shape: [4], floats: distinctTensor([4], seed: 44).floats.map { $0 * 0.9 + 0.013 })
    let c = Tensor(shape: [3, 1], floats: distinctTensor([3, 1], seed: 45).floats.map { $0 * 0.8 - 0.021 })
    let g = graph([node(op, ["a", "b", "c"])], inputs: [("a", a), ("b", b), ("c", c)])
    try checkGradients(g, feeds: ["a": a, "b": b, "c": c], step: 1e-3, label: op)
  }

  @Test func absAndReciprocal() throws {
    let x = ElementwiseGradientTests.awayFromZero([3, 5], seed: 46)
    for op in ["Abs", "Reciprocal"] {
      let g = graph([node(op, ["x"])], inputs: [("x", x)])
      try checkGradients(g, feeds: ["x": x], step: 1e-3, label: op)
    }
  }

  @Test(arguments: [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", "")])
  func pixelShuffle(_ op: String, _ mode: String) throws {
    let x = randomTensor([2, 8, 2, 4], seed: 47)
    let attributes: [String: Attribute] = ["blocksize": .int(2)].merging(mode.isEmpty ? [:] : ["mode": .string(mode)]) { a, _ in a }
    let g = graph([node(op, ["x"], attributes)], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], label: "\(op) \(mode)")
  }

  /// Nearest, linear and cubic resizing, up and down, by scales and by sizes.
  @Test(arguments: [
    ("nearest", "asymmetric", [Float(1), 1, 2, 2]), ("nearest", "half_pixel", [1, 1, 0.5, 1.5]),
    ("linear", "half_pixel", [1, 1, 2, 2]), ("linear", "align_corners", [1, 1, 1.5, 0.5]),
    ("cubic", "half_pixel", [1, 1, 2, 1.5]),
  ])
  func resize(_ mode: String, _ coordinates: String, _ scales: [Float]) throws {
    let x = randomTensor([1, 2, 4, 4], seed: 48)
    let g = graph([node("Resize", ["x", "", "scales"], ["mode": .string(mode), "coordinate_transformation_mode": .string(coordinates)])],
                  inputs: [("x", x)], constants: ["scales": Tensor(shape: [4], floats: scales)], opset: 13)
    try checkGradients(g, feeds: ["x": x], label: "Resize \(mode) \(coordinates) \(scales)")
  }

  @Test(arguments: [("Mish", [String: Attribute]()), ("Celu", ["alpha": .float(0.7)]), ("ThresholdedRelu", ["alpha": .float(0.4)])])
  func moreActivations(_ op: String, _ attributes: [String: Attribute]) throws {
    let x = Tensor(shape: [4, 5], floats: distinctTensor([4, 5], seed: 49).floats.map { $0 * 3 + 0.01 })
    let g = graph([node(op, ["x"], attributes)], inputs: [("x", x)], opset: 18)
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: op)
  }
}

/// ConvTranspose's gradients for input, weight and bias against finite differences.
@Suite struct ConvTransposeGradientTests {
  @Test(arguments: [
    ["strides": Attribute.ints([2, 2])],
    ["strides": .ints([2, 1]), "pads": .ints([1, 0, 0, 1]), "output_padding": .ints([1, 0]), "group": .int(2)],
    ["dilations": .ints([2, 1]), "auto_pad": .string("SAME_UPPER"), "strides": .ints([1, 2])],
  ])
  func convTranspose(_ attributes: [String: Attribute]) throws {
    let group: Int = { if case .int(let g)? = attributes["group"] { return g } else { return 1 } }()
    let x = randomTensor([2, 4, 3, 3], seed: 51)
    let w = randomTensor([4, 3, 3, 2], seed: 52, in: -0.5...0.5)
    let b = randomTensor([3 * group], seed: 53)
    let g = graph([node("ConvTranspose", ["x", "w", "b"], attributes)], inputs: [("x", x)], constants: ["w": w, "b": b])
    try checkGradients(g, feeds: ["x": x], step: 1e-2, label: "ConvTranspose \(attributes)")
  }
}
