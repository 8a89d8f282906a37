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
    // GEMM path: wide rows (stride 1), exact rows, pointwise in place; threaded from the work size.
    Case(n: 5, c: 8, h: 12, w: 12, m: 16, pads: [1, 1, 1, 1]),  // wide, chunks span images
    Case(n: 3, c: 64, h: 7, w: 7, m: 24, pads: [1, 1, 1, 1]),  // wide, one output row per chunk
    Case(n: 1, c: 16, h: 28, w: 28, m: 16, pads: [1, 1, 1, 1]),  // batch 1 split by rows
    Case(n: 3, c: 8, h: 13, w: 11, m: 12, strides: [2, 2], pads: [1, 1, 1, 1]),  // exact rows, stride 2
    Case(n: 2, c: 8, h: 9, w: 10, m: 8, strides: [1, 2], pads: [0, 2, 1, 0]),  // stride 1 x 2
    Case(n: 3, c: 6, h: 10, w: 10, m: 8, pads: [2, 2, 2, 2], dilations: [2, 2]),  // wide, dilated tail
    Case(n: 2, c: 6, h: 10, w: 3, m: 8, pads: [1, 1, 1, 1]),  // too narrow for wide rows
    Case(n: 3, c: 5, h: 8, w: 9, m: 7, k: [1, 3]),  // wide without a padded copy
    Case(n: 3, c: 16, h: 14, w: 14, m: 48, k: [1, 1]),  // pointwise in place, threaded
    Case(n: 3, c: 32, h: 14, w: 14, m: 16, k: [1, 1], strides: [2, 2], bias: false),  // 1x1 stride 2
    Case(n: 3, c: 8, h: 9, w: 9, m: 12, pads: [1, 1, 1, 1], group: 4),  // grouped, padded
    Case(n: 3, c: 4, h: 1, w: 1, m: 5, pads: [1, 1, 1, 1]),  // 1x1 map, padding only
    Case(n: 1, c: 2, h: 1, w: 1, m: 2, pads: [1, 1, 1, 1], group: 2),  // depthwise on a 1x1 map
    // Winograd F(2x2, 3x3) path (3x3, stride 1, undilated, >= 8 channels per group, >= 64 tiles
    // per call): odd and even output sizes (partial tiles at the right and bottom borders),
    // asymmetric and large padding, channel counts that are multiples of nothing, groups, batch 1,
    // tile rows padded to 4 tiles.
    Case(n: 2, c: 16, h: 28, w: 28, m: 16, pads: [1, 1, 1, 1]),
    Case(n: 5, c: 9, h: 7, w: 7, m: 11, pads: [1, 1, 1, 1]),  // 4x4 tiles, half of the last ones dropped
    Case(n: 1, c: 13, h: 19, w: 17, m: 8),  // batch 1, unpadded, 17x15 output
    Case(n: 3, c: 8, h: 9, w: 12, m: 10, pads: [0, 2, 1, 0]),  // asymmetric padding
    Case(n: 4, c: 10, h: 6, w: 5, m: 9, pads: [2, 2, 2, 2]),  // padding wider than the window's reach
    Case(n: 64, c: 8, h: 4, w: 4, m: 8),  // a single 2x2 tile per image
    Case(n: 5, c: 8, h: 4, w: 30, m: 8, pads: [0, 1, 0, 1]),  // one tile row of 15 tiles
    Case(n: 4, c: 32, h: 8, w: 9, m: 16, pads: [1, 1, 1, 1], group: 2),  // grouped
    Case(n: 5, c: 64, h: 7, w: 7, m: 64, pads: [1, 1, 1, 1], bias: false),  // threaded, fm_resnet20 stage 3
    // Depthwise path: the 3x3 register kernel (strides 1 and 2, dilated) and the general taps.
    Case(n: 3, c: 16, h: 14, w: 14, m: 16, pads: [1, 1, 1, 1], group: 16),
    Case(n: 5, c: 24, h: 28, w: 28, m: 24, strides: [2, 2], pads: [0, 0, 1, 1], group: 24),
    Case(n: 2, c: 8, h: 9, w: 9, m: 8, pads: [2, 2, 2, 2], dilations: [2, 2], group: 8),
    Case(n: 3, c: 8, h: 9, w: 11, m: 8, k: [5, 5], strides: [2, 1], pads: [2, 1, 2, 1], group: 8),
    Case(n: 1, c: 3, h: 6, w: 6, m: 3, k: [2, 3], group: 3, bias: false),
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

  @Test(arguments: cases) func fusedActivationMatchesTheReference(_ t: Case) throws {
    let x = randomTensor([t.n, t.c, t.h, t.w], seed: 11)
    let wt = randomTensor([t.m, t.c / t.group] + t.k, seed: 12)
    let b = t.bias ? randomTensor([t.m], seed: 13) : nil
    let clip = FusedActivation(lower: -0.25, upper: 0.5)
    let y = try runKernel("Conv", [x, wt, b], [
      "strides": .ints(t.strides), "pads": .ints(t.pads), "dilations": .ints(t.dilations), "group": .int(t.group),
    ], fused: clip)[0]
    let ref = Reference.conv2d(
      x: x, w: wt, bias: b?.floats, strides: t.strides, pads: t.pads, dilations: t.dilations, group: t.group)
    #expect(y.shape == ref.shape)
    #expect(y.floats.allSatisfy { $0 >= -0.25 && $0 <= 0.5 })
    // Clamping does not grow the error: measure it against the unclamped output's scale.
    let scale = ref.floats.reduce(Float(0)) { max($0, abs($1)) }
    let diff = zip(y.floats, ref.floats).reduce(Float(0)) { max($0, abs($1.0 - min(max($1.1, -0.25), 0.5))) }
    #expect(diff <= 1e-5 * max(scale, 1))
  }

  /// An image's output does not depend on the other images of the batch (nor on how the rows
  /// were split into GEMM chunks and threads) beyond float rounding: OpenBLAS picks another
  /// kernel for small products, so the GEMM path agrees to about 1e-7, the depthwise loops bit
  /// for bit. The same call repeated gives the same bits.
  @Test(arguments: [
    Case(c: 8, h: 12, w: 12, m: 16, pads: [1, 1, 1, 1]),  // wide rows
    Case(c: 64, h: 7, w: 7, m: 24, pads: [1, 1, 1, 1]),  // one row per chunk
    Case(c: 8, h: 13, w: 11, m: 12, strides: [2, 2], pads: [1, 1, 1, 1]),  // exact rows
    Case(c: 16, h: 14, w: 14, m: 48, k: [1, 1]),  // pointwise in place
    Case(c: 8, h: 9, w: 9, m: 12, pads: [1, 1, 1, 1], group: 4),
    Case(c: 16, h: 17, w: 17, m: 16, pads: [1, 1, 1, 1]),  // Winograd even alone, partial border tiles
    Case(c: 24, h: 28, w: 28, m: 24, strides: [2, 2], pads: [0, 0, 1, 1], group: 24),  // depthwise
  ])
  func eachImageIsComputedAsIfAlone(_ t: Case) throws {
    let n = 5
    let x = randomTensor([n, t.c, t.h, t.w], seed: 21)
    let inputs = { (x: Tensor) -> [Tensor?] in
      [x, randomTensor([t.m, t.c / t.group] + t.k, seed: 22), randomTensor([t.m], seed: 23)]
    }
    let attributes: [String: Attribute] = [
      "strides": .ints(t.strides), "pads": .ints(t.pads), "dilations": .ints(t.dilations), "group": .int(t.group),
    ]
    let batched = try runKernel("Conv", inputs(x), attributes)[0]
    #expect(try runKernel("Conv", inputs(x), attributes)[0].floats == batched.floats)
    let per = batched.count / n, inPer = x.count / n
    for i in 0..<n {
      let one = Tensor(shape: [1, t.c, t.h, t.w], floats: Array(x.floats[(i * inPer)..<((i + 1) * inPer)]))
      let alone = try runKernel("Conv", inputs(one), attributes)[0].floats
      let row = Array(batched.floats[(i * per)..<((i + 1) * per)])
      let error = maxRelativeError(alone, row)
      #expect(t.group == t.c ? error == 0 : error < 1e-6, "image \(i)")
    }
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

/// ConvTranspose's scatter map and column buffer are counted before they are allocated: a
/// 50,000-tap kernel over 50,000 input positions asks for 2.5e9 entries (20 GB of indices), more
/// than any one buffer may hold, and the kernel says so instead of allocating.
@Suite struct ConvTransposeLimitTests {
  @Test func aHugeScatterMapIsRefused() {
    let n = 50_000
    let x = Tensor(shape: [1, 1, n, 1], repeating: 1)
    let w = Tensor(shape: [1, 1, n, 1], repeating: 1)
    #expect(throws: LowbitError.self) { try KernelHarness.run1("ConvTranspose", [x, w]) }
  }
}
