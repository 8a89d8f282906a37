import LowbitCore
import LowbitTestSupport
import Testing

func runKernel(
  _ op: String, _ inputs: [Tensor?], _ attributes: [String: Attribute] = [:], opset: Int = 17,
  fused: FusedActivation? = nil
) throws -> [Tensor] {
  let node = Node(
    name: "n", opType: op, inputs: inputs.indices.map { inputs[$0] == nil ? "" : "i\($0)" },
    outputs: ["y"], attributes: attributes)
  return try Ops.kernels[op]!(KernelContext(node: node, inputs: inputs, opset: opset, fusedActivation: fused))
}

@Suite struct ConvolutionTests {
  struct Case: CustomTestStringConvertible, Sendable {
    var n = 2, c = 4, h = 7, w = 6, m = 6, k = [3, 3], strides = [1, 1], pads = [0, 0, 0, 0]
    var dilations = [1, 1], group = 1, bias = true
    var testDescription: String { "c\(c) m\(m) k\(k) s\(strides) p\(pads) d\(dilations) g\(group)" }
  }

  static let cases: [Case] = [
    Case(),
    Case(pads: [1, 1, 1, 1]),
    Case(strides: [2, 2], pads: [1, 0, 2, 1]),
    Case(dilations: [2, 1]),
    Case(k: [1, 1], bias: false),
    Case(k: [1, 1], strides: [2, 2]),
    Case(c: 4, m: 4, group: 4),  // depthwise
    Case(c: 4, m: 8, pads: [1, 1, 1, 1], group: 2),  // grouped
    Case(c: 6, m: 6, k: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], group: 6),
    Case(n: 1, c: 1, h: 1, w: 1, m: 3, k: [1, 1]),  // size-1 everything
    Case(n: 0),  // empty batch
    Case(n: 1, c: 3, h: 9, w: 9, m: 130, k: [5, 5], pads: [2, 2, 2, 2]),  // wide enough to split the GEMM
  ]

  @Test(arguments: cases) func matchesTheDirectLoopReference(_ t: Case) throws {
    let x = randomTensor([t.n, t.c, t.h, t.w], seed: 1)
    let wt = randomTensor([t.m, t.c / t.group] + t.k, seed: 2)
    let b = t.bias ? randomTensor([t.m], seed: 3) : nil
    let y = try runKernel("Conv", [x, wt, b], [
      "strides": .ints(t.strides), "pads": .ints(t.pads), "dilations": .ints(t.dilations),
      "group": .int(t.group), "kernel_shape": .ints(t.k),
    ])[0]
    let ref = Reference.conv2d(
      x: x, w: wt, bias: b?.floats, strides: t.strides, pads: t.pads, dilations: t.dilations, group: t.group)
    #expect(y.shape == ref.shape)
    #expect(maxRelativeError(y.floats, ref.floats) < 1e-5)
  }

  @Test func autoPadSameUpperKeepsTheSpatialSize() throws {
    let x = randomTensor([1, 2, 5, 7], seed: 4), w = randomTensor([3, 2, 3, 3], seed: 5)
    let y = try runKernel("Conv", [x, w], ["auto_pad": .string("SAME_UPPER")])[0]
    #expect(y.shape == [1, 3, 5, 7])
    let ref = Reference.conv2d(x: x, w: w, bias: nil, strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], group: 1)
    #expect(maxRelativeError(y.floats, ref.floats) < 1e-5)
  }

  @Test func oneDimensionalConvolutionRunsAsTwoD() throws {
    let x = randomTensor([2, 3, 10], seed: 6), w = randomTensor([4, 3, 3], seed: 7)
    let y = try runKernel("Conv", [x, w], ["pads": .ints([1, 1]), "strides": .ints([2])])[0]
    let ref = Reference.conv2d(
      x: x.reshaped([2, 3, 1, 10]), w: w.reshaped([4, 3, 1, 3]), bias: nil, strides: [1, 2],
      pads: [0, 1, 0, 1], dilations: [1, 1], group: 1)
    #expect(y.shape == [2, 4, 5])
    #expect(maxRelativeError(y.floats, ref.floats) < 1e-5)
  }

  @Test func fusedReluAndClipClampTheOutput() throws {
    let x = randomTensor([1, 3, 6, 6], seed: 8), w = randomTensor([5, 3, 3, 3], seed: 9)
    let plain = try runKernel("Conv", [x, w])[0].floats
    let relu = try runKernel("Conv", [x, w], fused: FusedActivation(lower: 0, upper: .infinity))[0].floats
    let clip = try runKernel("Conv", [x, w], fused: FusedActivation(lower: -0.5, upper: 0.5))[0].floats
    #expect(relu == plain.map { max($0, 0) })
    #expect(clip == plain.map { min(max($0, -0.5), 0.5) })
  }

  @Test func badShapesAndAttributesAreErrorsNamingTheNode() throws {
    let x = randomTensor([1, 4, 5, 5], seed: 1)
    let bad: [([Tensor?], [String: Attribute])] = [
      ([x, randomTensor([2, 3, 3, 3], seed: 2)], [:]),  // channels mismatch
      ([x, randomTensor([2, 4, 3], seed: 2)], [:]),  // weight rank
      ([x, randomTensor([2, 4, 9, 9], seed: 2)], [:]),  // kernel larger than input
      ([x, randomTensor([2, 4, 3, 3], seed: 2)], ["strides": .ints([0, 1])]),
      ([x, randomTensor([2, 4, 3, 3], seed: 2)], ["pads": .ints([1, 1])]),
      ([x, randomTensor([2, 4, 3, 3], seed: 2)], ["group": .int(3)]),
      ([x, randomTensor([2, 4, 3, 3], seed: 2), randomTensor([3], seed: 3)], [:]),  // bias size
      ([x, randomTensor([2, 4, 3, 3], seed: 2)], ["auto_pad": .string("SAME_MIDDLE")]),
      ([randomTensor([1, 4, 5, 5, 5], seed: 1), randomTensor([2, 4, 3, 3, 3], seed: 2)], [:]),  // 3-D
    ]
    for (inputs, attributes) in bad {
      let error = #expect(throws: LowbitError.self) { try runKernel("Conv", inputs, attributes) }
      #expect(error?.description.hasPrefix("[Conv 'n']") == true)
    }
  }
}
