import LowbitCore
import LowbitTestSupport
import Testing

@Suite struct LinearTests {
  @Test(arguments: [
    ([3, 4], [4, 5]), ([2, 3, 4], [4, 5]), ([2, 3, 4], [2, 4, 5]), ([2, 1, 3, 4], [5, 4, 2]),
    ([1, 4], [3, 4, 2]), ([6, 3, 4], [1, 4, 2]), ([2, 0, 4], [4, 3]), ([130, 70], [70, 300]),
  ])
  func matMulMatchesTheReference(_ shapes: ([Int], [Int])) throws {
    let a = randomTensor(shapes.0, seed: 1), b = randomTensor(shapes.1, seed: 2)
    let y = try runKernel("MatMul", [a, b])[0]
    let ref = Reference.matMul(a, b)
    #expect(y.shape == ref.shape)
    #expect(maxRelativeError(y.floats, ref.floats) < 1e-5)
  }

  @Test func matMulPromotesVectors() throws {
    let a = randomTensor([4], seed: 1), b = randomTensor([4, 3], seed: 2)
    let y = try runKernel("MatMul", [a, b])[0]
    #expect(y.shape == [3])
    #expect(maxRelativeError(y.floats, Reference.matMul(a.reshaped([1, 4]), b).floats) < 1e-5)
    let v = try runKernel("MatMul", [b.reshaped([3, 4]), a])[0]
    #expect(v.shape == [3])
  }

  @Test func gemmHandlesTransposesAlphaBetaAndBroadcastC() throws {
    let a = randomTensor([4, 3], seed: 1), b = randomTensor([5, 4], seed: 2), c = randomTensor([5], seed: 3)
    let y = try runKernel("Gemm", [a, b, c], [
      "transA": .int(1), "transB": .int(1), "alpha": .float(0.5), "beta": .float(2),
    ])[0]
    // Reference: 0.5 * A^T B^T + 2 c.
    let at = Tensor(shape: [3, 4], floats: (0..<12).map { a.floats[($0 % 4) * 3 + $0 / 4] })
    let bt = Tensor(shape: [4, 5], floats: (0..<20).map { b.floats[($0 % 5) * 4 + $0 / 5] })
    let ref = Reference.matMul(at, bt).floats.enumerated().map { 0.5 * $0.element + 2 * c.floats[$0.offset % 5] }
    #expect(y.shape == [3, 5])
    #expect(maxRelativeError(y.floats, ref) < 1e-5)
  }

  @Test func innerSizeMismatchIsAnError() {
    #expect(throws: LowbitError.self) { try runKernel("MatMul", [randomTensor([2, 3], seed: 1), randomTensor([4, 2], seed: 2)]) }
    #expect(throws: LowbitError.self) { try runKernel("Gemm", [randomTensor([2, 3], seed: 1), randomTensor([4, 2], seed: 2)]) }
    #expect(throws: LowbitError.self) { try runKernel("MatMul", [randomTensor([2, 2, 3], seed: 1), randomTensor([3, 3, 2], seed: 2)]) }
  }
}

@Suite struct PoolingTests {
  @Test(arguments: [
    ([2, 2], [2, 2], [0, 0, 0, 0]), ([3, 3], [2, 2], [1, 1, 1, 1]), ([3, 2], [1, 2], [1, 0, 1, 1]),
    ([1, 1], [1, 1], [0, 0, 0, 0]), ([3, 3], [1, 1], [1, 1, 1, 1]), ([3, 3], [1, 1], [0, 2, 1, 0]),
  ])
  func poolsMatchTheReference(_ p: ([Int], [Int], [Int])) throws {
    let x = randomTensor([2, 3, 7, 8], seed: 5)
    for isMax in [true, false] {
      let y = try runKernel(isMax ? "MaxPool" : "AveragePool", [x], [
        "kernel_shape": .ints(p.0), "strides": .ints(p.1), "pads": .ints(p.2),
      ])[0]
      let ref = Reference.pool2d(x: x, kernel: p.0, strides: p.1, pads: p.2, max: isMax)
      #expect(y.shape == ref.shape)
      #expect(maxRelativeError(y.floats, ref.floats) < 1e-6)
    }
  }

  @Test func ceilModeAddsThePartialWindow() throws {
    let x = randomTensor([1, 1, 5, 5], seed: 1)
    let y = try runKernel("MaxPool", [x], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2]), "ceil_mode": .int(1)])[0]
    #expect(y.shape == [1, 1, 3, 3])
    #expect(y.floats[8] == x.floats[24])  // the last window holds only the corner element
  }

  @Test func averagePoolCountIncludePadDividesByTheWholeWindow() throws {
    let x = Tensor(shape: [1, 1, 2, 2], repeating: 1)
    let y = try runKernel("AveragePool", [x], [
      "kernel_shape": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "count_include_pad": .int(1),
    ])[0]
    #expect(y.floats == [0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25])
  }

  @Test func globalAveragePoolAndBatchNorm() throws {
    let x = randomTensor([2, 3, 4, 5], seed: 2)
    let g = try runKernel("GlobalAveragePool", [x])[0]
    #expect(g.shape == [2, 3, 1, 1])
    let mean = (0..<20).map { x.floats[20 + $0] }.reduce(0, +) / 20
    #expect(abs(g.floats[1] - mean) < 1e-6)
    let scale = Tensor(shape: [3], floats: [1, 2, 3]), bias = Tensor(shape: [3], floats: [0, 1, -1])
    let mu = Tensor(shape: [3], floats: [0.5, 0, 1]), variance = Tensor(shape: [3], floats: [1, 4, 0.25])
    let y = try runKernel("BatchNormalization", [x, scale, bias, mu, variance], ["epsilon": .float(0)])[0]
    let i = 20 * 2 + 7  // batch 0, channel 2, element 7
    #expect(abs(y.floats[i] - ((x.floats[i] - 1) / 0.5 * 3 - 1)) < 1e-5)
  }
}
