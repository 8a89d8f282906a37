import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct LinearGradientTests {
  @Test(arguments: [
    (false, false, [Int]?.some([5])), (true, false, [4, 1]), (false, true, [4, 5]), (true, true, []),
    (false, true, nil),
  ])
  func gemmMatchesFiniteDifferences(_ p: (Bool, Bool, [Int]?)) throws {
    let (transA, transB, cShape) = p
    let (m, k, n) = (4, 3, 5)
    let a = randomTensor(transA ? [k, m] : [m, k], seed: 1), b = randomTensor(transB ? [n, k] : [k, n], seed: 2)
    var inputs = [("a", a), ("b", b)]
    if let cShape { inputs.append(("c", randomTensor(cShape, seed: 3))) }
    let g = graph([node("Gemm", inputs.map(\.0), [
      "transA": .int(transA ? 1 : 0), "transB": .int(transB ? 1 : 0), "alpha": .float(0.7), "beta": .float(1.5),
    ])], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), label: "Gemm")
  }

  @Test(arguments: [
    ([3, 4], [4, 5]), ([2, 3, 4], [4, 5]), ([2, 3, 4], [2, 4, 5]), ([2, 1, 3, 4], [5, 4, 2]),
    ([4], [4, 3]), ([3, 4], [4]), ([1, 4], [3, 4, 2]), ([3, 2, 4], [1, 4, 2]),
  ])
  func matMulMatchesFiniteDifferences(_ shapes: ([Int], [Int])) throws {
    let inputs = [("a", randomTensor(shapes.0, seed: 1)), ("b", randomTensor(shapes.1, seed: 2))]
    let g = graph([node("MatMul", ["a", "b"])], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), label: "MatMul")
  }
}
