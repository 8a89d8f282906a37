import Glibc
import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

/// Reference reduction over `axes` of `x`, one output element at a time, in Double.
private func reference(
  _ x: Tensor, axes: [Int], keepDims: Bool, _ combine: ([Double]) -> Double
) -> (shape: [Int], values: [Float]) {
  let reduced = Set(axes)
  let keptShape = x.shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
  let count = keptShape.reduce(1, *)
  var groups = [[Double]](repeating: [], count: count)
  for flat in 0..<x.count {
    let index = H.unravel(flat, x.shape).enumerated().map { reduced.contains($0.offset) ? 0 : $0.element }
    groups[H.ravel(index, keptShape)].append(Double(x.floats[flat]))
  }
  let shape = keepDims ? keptShape : x.shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
  return (shape, groups.map { Float(combine($0)) })
}

@Suite("Reduction kernels")
struct ReductionTests {
  static let formulas: [(String, @Sendable ([Double]) -> Double)] = [
    ("ReduceSum", { $0.reduce(0, +) }),
    ("ReduceMean", { $0.reduce(0, +) / Double($0.count) }),
    ("ReduceMax", { $0.max()! }),
    ("ReduceMin", { $0.min()! }),
    ("ReduceProd", { $0.reduce(1, *) }),
    ("ReduceL1", { $0.reduce(0) { $0 + abs($1) } }),
    ("ReduceL2", { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }),
    ("ReduceSumSquare", { $0.reduce(0) { $0 + $1 * $1 } }),
    ("ReduceLogSumExp", { doubleLog($0.reduce(0) { $0 + doubleExp($1) }) }),
  ]

  static let axesCases: [[Int]] = [[1], [0, 2], [-1], [2, 0], [0, 1, 2]]

  @Test("reduction matches the reference on every axes set, keepdims 0 and 1", arguments: formulas.map(\.0))
  func reductionMatchesReference(name: String) throws {
    let f = Self.formulas.first { $0.0 == name }!.1
    let x = randomTensor([3, 4, 5], seed: 5, in: 0.5...1.5)
    for axes in Self.axesCases {
      for keep in [0, 1] {
        let y = try H.run1(name, [x, H.ints(axes.map { Int64($0) })], attributes: ["keepdims": .int(keep)], opset: 18)
        let ref = reference(x, axes: axes.map { $0 < 0 ? $0 + 3 : $0 }, keepDims: keep == 1, f)
        #expect(y.shape == ref.shape, "\(name) \(axes) keepdims \(keep)")
        #expect(maxRelativeError(y.floats, ref.values) < 1e-6, "\(name) \(axes) keepdims \(keep)")
      }
    }
  }

  @Test func axesComeFromAttributeBeforeOpset18AndInputAfter() throws {
    let x = H.floats([2, 2], [1, 2, 3, 4])
    #expect(try H.run1("ReduceMean", [x], attributes: ["axes": .ints([1])], opset: 13).floats == [1.5, 3.5])
    #expect(try H.run1("ReduceMean", [x, H.ints([0])], opset: 18).floats == [2, 3])
    #expect(try H.run1("ReduceSum", [x, H.ints([1])], opset: 13).floats == [3, 7])
    #expect(try H.run1("ReduceSum", [x], attributes: ["axes": .ints([0])], opset: 11).floats == [4, 6])
  }

  @Test func emptyAxesReduceAllUnlessNoop() throws {
    let x = H.floats([2, 2], [1, -2, 3, 4])
    let all = try H.run1("ReduceSum", [x, H.ints([0], [])])
    #expect(all.shape == [1, 1] && all.floats == [6])
    let flat = try H.run1("ReduceSum", [x], attributes: ["keepdims": .int(0)])
    #expect(flat.shape == [] && flat.floats == [6])
    let noop = try H.run1("ReduceSum", [x, H.ints([0], [])], attributes: ["noop_with_empty_axes": .int(1)])
    #expect(noop == x)
    let square = try H.run1("ReduceSumSquare", [x], attributes: ["noop_with_empty_axes": .int(1)], opset: 18)
    #expect(square.floats == [1, 4, 9, 16])
  }

  @Test func reducingEmptySetsGivesIdentities() throws {
    let x = H.floats([2, 0], [])
    func r(_ op: String) throws -> Tensor { try H.run1(op, [x, H.ints([1])], attributes: ["keepdims": .int(0)], opset: 18) }
    #expect(try r("ReduceSum").floats == [0, 0])
    #expect(try r("ReduceProd").floats == [1, 1])
    #expect(try r("ReduceMax").floats == [-.infinity, -.infinity])
    #expect(try r("ReduceMin").floats == [.infinity, .infinity])
    #expect(try r("ReduceMean").floats.allSatisfy { $0.isNaN })
    #expect(try r("ReduceL2").floats == [0, 0])
    let none = try H.run1("ReduceSum", [x, H.ints([0])], opset: 18)
    #expect(none.shape == [1, 0])
  }

  @Test func integerAndBoolReductions() throws {
    let x = H.ints([2, 3], [1, -2, 3, 4, 5, -6])
    #expect(try H.run1("ReduceSum", [x, H.ints([1])]).ints == [2, 3])
    #expect(try H.run1("ReduceMax", [x, H.ints([0])], opset: 18).ints == [4, 5, 3])
    #expect(try H.run1("ReduceProd", [x, H.ints([1])], attributes: ["keepdims": .int(0)], opset: 18).ints == [-6, -120])
    #expect(try H.run1("ReduceMean", [x, H.ints([1])], opset: 18).ints == [0, 1])
    #expect(try H.run1("ReduceL1", [x, H.ints([1])], opset: 18).ints == [6, 15])
    let b = H.bools([2, 2], [true, false, true, true])
    #expect(try H.run1("ReduceMax", [b, H.ints([1])], opset: 20).bools == [true, true])
    #expect(try H.run1("ReduceMin", [b, H.ints([1])], opset: 20).bools == [false, true])
    #expect(H.throwsNodeError { try H.run1("ReduceSum", [b]) })
  }

  @Test func reductionErrors() {
    let x = H.floats([2, 2], [1, 2, 3, 4])
    #expect(H.throwsNodeError { try H.run1("ReduceSum", [x, H.ints([2])]) })
    #expect(H.throwsNodeError { try H.run1("ReduceSum", [x, H.ints([0, -2])]) })
    #expect(H.throwsNodeError { try H.run1("ReduceMean", [x], attributes: ["axes": .ints([-3])], opset: 13) })
  }

  @Test func maxPropagatesNaN() throws {
    let y = try H.run1("ReduceMax", [H.floats([3], [1, .nan, 2])], opset: 18)
    #expect(y.floats[0].isNaN)
  }

  @Test func largeReductionUsesParallelRows() throws {
    let x = randomTensor([256, 512], seed: 9)
    let y = try H.run1("ReduceMean", [x, H.ints([-1])], attributes: ["keepdims": .int(0)], opset: 18)
    let ref = (0..<256).map { r in Float(x.floats[(r * 512)..<((r + 1) * 512)].reduce(0.0) { $0 + Double($1) } / 512) }
    #expect(maxRelativeError(y.floats, ref) < 1e-6)
  }

  // MARK: ArgMax, ArgMin

  @Test func argMaxAndArgMinWithKeepDimsAndNegativeAxis() throws {
    let x = H.floats([2, 3], [1, 5, 5, 7, 0, 7])
    let m = try H.run1("ArgMax", [x], attributes: ["axis": .int(1)])
    #expect(m.dtype == .int64 && m.shape == [2, 1] && m.ints == [1, 0])
    let last = try H.run1("ArgMax", [x], attributes: ["axis": .int(-1), "select_last_index": .int(1), "keepdims": .int(0)])
    #expect(last.shape == [2] && last.ints == [2, 2])
    let mins = try H.run1("ArgMin", [x])
    #expect(mins.shape == [1, 3] && mins.ints == [0, 1, 0])
    let ints = try H.run1("ArgMin", [H.ints([3, 1, 1])], attributes: ["select_last_index": .int(1)])
    #expect(ints.ints == [2])
    #expect(try H.run1("ArgMax", [H.floats([3], [1, .nan, 2])]).ints == [1])
  }

  @Test func argMaxRejectsEmptyAxisAndBadAxis() {
    #expect(H.throwsNodeError { try H.run1("ArgMax", [H.floats([0, 2], [])]) })
    #expect(H.throwsNodeError { try H.run1("ArgMax", [H.floats([2], [1, 2])], attributes: ["axis": .int(1)]) })
  }

  @Test func argMaxOfEmptyOuterDimIsEmpty() throws {
    let y = try H.run1("ArgMax", [H.floats([0, 2], [])], attributes: ["axis": .int(1)])
    #expect(y.shape == [0, 1])
  }
}

private func doubleLog(_ x: Double) -> Double { Glibc.log(x) }
private func doubleExp(_ x: Double) -> Double { Glibc.exp(x) }
