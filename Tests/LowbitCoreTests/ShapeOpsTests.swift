import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

/// 0, 1, 2, ... as a float tensor of `shape`.
private func iota(_ shape: [Int]) -> Tensor {
  Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { Float($0) })
}

@Suite("Shape kernels")
struct ShapeOpsTests {
  // MARK: Shape, Size, Reshape, Flatten

  @Test func shapeWithStartAndEnd() throws {
    let x = iota([2, 3, 4, 5])
    #expect(try H.run1("Shape", [x]).ints == [2, 3, 4, 5])
    #expect(try H.run1("Shape", [x], attributes: ["start": .int(1), "end": .int(-1)]).ints == [3, 4])
    #expect(try H.run1("Shape", [x], attributes: ["start": .int(-10), "end": .int(10)]).ints == [2, 3, 4, 5])
    #expect(try H.run1("Shape", [x], attributes: ["start": .int(3), "end": .int(1)]).shape == [0])
    #expect(try H.run1("Shape", [Tensor(scalar: 1)]).shape == [0])
    let size = try H.run1("Size", [x])
    #expect(size.shape == [] && size.ints == [120])
  }

  @Test func reshapeCopiesZerosAndInfersMinusOne() throws {
    let x = iota([2, 3, 4])
    let y = try H.run1("Reshape", [x, H.ints([0, -1])])
    #expect(y.shape == [2, 12] && y.floats == x.floats)
    #expect(try H.run1("Reshape", [x, H.ints([-1])]).shape == [24])
    #expect(try H.run1("Reshape", [x, H.ints([4, 0, 2])]).shape == [4, 3, 2])
    #expect(try H.run1("Reshape", [iota([0, 3]), H.ints([3, 0])], attributes: ["allowzero": .int(1)]).shape == [3, 0])
    #expect(try H.run1("Reshape", [Tensor(scalar: 5), H.ints([1, 1])]).shape == [1, 1])
  }

  @Test func reshapeErrorsNameTheNode() {
    let x = iota([2, 3, 4])
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([5, -1])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([-1, -1])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([5, 5])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([2, 3, 4, 0])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([-2, 12])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([0, -1])], attributes: ["allowzero": .int(1)]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.floats([2], [6, 4])]) })
    #expect(H.throwsNodeError { try H.run1("Reshape", [x, H.ints([Int64.max, Int64.max, 0])]) })
  }

  @Test func flattenAtEveryAxis() throws {
    let x = iota([2, 3, 4])
    #expect(try H.run1("Flatten", [x]).shape == [2, 12])
    #expect(try H.run1("Flatten", [x], attributes: ["axis": .int(0)]).shape == [1, 24])
    #expect(try H.run1("Flatten", [x], attributes: ["axis": .int(3)]).shape == [24, 1])
    #expect(try H.run1("Flatten", [x], attributes: ["axis": .int(-1)]).shape == [6, 4])
    #expect(H.throwsNodeError { try H.run1("Flatten", [x], attributes: ["axis": .int(4)]) })
  }

  // MARK: Transpose

  @Test func transposeMatchesIndexReference() throws {
    let x = iota([2, 3, 4, 5])
    for perm in [[0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 2, 3]] {
      let y = try H.run1("Transpose", [x], attributes: ["perm": .ints(perm)])
      let shape = perm.map { x.shape[$0] }
      #expect(y.shape == shape)
      let ref = (0..<x.count).map { flat -> Float in
        let out = H.unravel(flat, shape)
        var src = [Int](repeating: 0, count: 4)
        for (i, p) in perm.enumerated() { src[p] = out[i] }
        return x.floats[H.ravel(src, x.shape)]
      }
      #expect(y.floats == ref, "perm \(perm)")
    }
    #expect(try H.run1("Transpose", [iota([2, 3])]).floats == [0, 3, 1, 4, 2, 5])
    let ints = try H.run1("Transpose", [H.ints([2, 2], [1, 2, 3, 4])])
    #expect(ints.ints == [1, 3, 2, 4])
  }

  @Test func transposeRejectsBadPerm() {
    let x = iota([2, 3])
    #expect(H.throwsNodeError { try H.run1("Transpose", [x], attributes: ["perm": .ints([0, 0])]) })
    #expect(H.throwsNodeError { try H.run1("Transpose", [x], attributes: ["perm": .ints([0, 2])]) })
    #expect(H.throwsNodeError { try H.run1("Transpose", [x], attributes: ["perm": .ints([1, 0, 2])]) })
  }

  @Test func largeTransposeMatchesReference() throws {
    let x = randomTensor([8, 64, 20, 20], seed: 11)
    let y = try H.run1("Transpose", [x], attributes: ["perm": .ints([0, 2, 3, 1])])
    var ref = [Float](repeating: 0, count: x.count)
    for n in 0..<8 { for c in 0..<64 { for h in 0..<20 { for w in 0..<20 {
      ref[((n * 20 + h) * 20 + w) * 64 + c] = x.floats[((n * 64 + c) * 20 + h) * 20 + w]
    } } } }
    #expect(y.floats == ref)
  }

  // MARK: Concat, Split

  @Test func concatAlongNegativeAxisWithEmptyPart() throws {
    let a = iota([2, 2])
    let b = H.floats([2, 1], [10, 11])
    let e = H.floats([2, 0], [])
    let y = try H.run1("Concat", [a, e, b], attributes: ["axis": .int(-1)])
    #expect(y.shape == [2, 3] && y.floats == [0, 1, 10, 2, 3, 11])
    let z = try H.run1("Concat", [a, a], attributes: ["axis": .int(0)])
    #expect(z.shape == [4, 2] && z.floats == [0, 1, 2, 3, 0, 1, 2, 3])
    let i = try H.run1("Concat", [H.ints([1, 2]), H.ints([3])], attributes: ["axis": .int(0)])
    #expect(i.ints == [1, 2, 3])
  }

  @Test func concatRejectsMismatches() {
    let a = iota([2, 2])
    #expect(H.throwsNodeError { try H.run1("Concat", [a, iota([3, 3])], attributes: ["axis": .int(0)]) })
    #expect(H.throwsNodeError { try H.run1("Concat", [a, iota([2])], attributes: ["axis": .int(0)]) })
    #expect(H.throwsNodeError { try H.run1("Concat", [a, H.ints([2, 2], [1, 2, 3, 4])], attributes: ["axis": .int(0)]) })
    #expect(H.throwsNodeError { try H.run1("Concat", [a, a]) })
    #expect(H.throwsNodeError { try H.run1("Concat", [a, a], attributes: ["axis": .int(2)]) })
  }

  @Test func splitBySizesNumOutputsAndEqualParts() throws {
    let x = iota([2, 5])
    let parts = try H.run("Split", [x, H.ints([2, 3])], attributes: ["axis": .int(1)], outputs: 2)
    #expect(parts[0].shape == [2, 2] && parts[0].floats == [0, 1, 5, 6])
    #expect(parts[1].shape == [2, 3] && parts[1].floats == [2, 3, 4, 7, 8, 9])
    let uneven = try H.run("Split", [x], attributes: ["axis": .int(-1), "num_outputs": .int(2)], outputs: 2, opset: 18)
    #expect(uneven.map(\.shape) == [[2, 3], [2, 2]])
    let equal = try H.run("Split", [iota([6])], outputs: 3)
    #expect(equal.map(\.floats) == [[0, 1], [2, 3], [4, 5]])
    let old = try H.run("Split", [iota([4])], attributes: ["split": .ints([1, 3])], outputs: 2, opset: 11)
    #expect(old.map(\.floats) == [[0], [1, 2, 3]])
    let withEmpty = try H.run("Split", [iota([3]), H.ints([0, 3])], outputs: 2)
    #expect(withEmpty[0].shape == [0] && withEmpty[1].floats == [0, 1, 2])
  }

  @Test func splitRejectsBadSizes() {
    let x = iota([2, 5])
    #expect(H.throwsNodeError { try H.run("Split", [x, H.ints([2, 2])], attributes: ["axis": .int(1)], outputs: 2) })
    #expect(H.throwsNodeError { try H.run("Split", [x, H.ints([5])], attributes: ["axis": .int(1)], outputs: 2) })
    #expect(H.throwsNodeError { try H.run("Split", [x], attributes: ["axis": .int(1)], outputs: 2) })
    #expect(H.throwsNodeError { try H.run("Split", [x, H.ints([6, -1])], attributes: ["axis": .int(1)], outputs: 2) })
  }

  // MARK: Slice

  @Test func sliceBasicAndNegativeAxes() throws {
    let x = iota([3, 4])
    let y = try H.run1("Slice", [x, H.ints([1, 0]), H.ints([3, 3])])
    #expect(y.shape == [2, 3] && y.floats == [4, 5, 6, 8, 9, 10])
    let z = try H.run1("Slice", [x, H.ints([1]), H.ints([-1]), H.ints([-1])])
    #expect(z.shape == [3, 2] && z.floats == [1, 2, 5, 6, 9, 10])
    let s = try H.run1("Slice", [x, H.ints([0]), H.ints([4]), H.ints([1]), H.ints([2])])
    #expect(s.floats == [0, 2, 4, 6, 8, 10])
  }

  @Test func sliceWithNegativeStepsAndClampedEnds() throws {
    let x = iota([5])
    func slice(_ s: Int64, _ e: Int64, _ step: Int64) throws -> [Float] {
      try H.run1("Slice", [x, H.ints([s]), H.ints([e]), H.ints([0]), H.ints([step])]).floats
    }
    #expect(try slice(-1, Int64.min, -1) == [4, 3, 2, 1, 0])
    #expect(try slice(Int64.max, Int64.min, -2) == [4, 2, 0])
    #expect(try slice(3, 0, -1) == [3, 2, 1])
    #expect(try slice(10, -10, -1) == [4, 3, 2, 1, 0])
    #expect(try slice(1, Int64.max, 1) == [1, 2, 3, 4])
    #expect(try slice(-100, 2, 1) == [0, 1])
    #expect(try slice(2, 2, 1) == [])
    #expect(try slice(1, 3, -1) == [])
    #expect(try slice(0, 5, Int64.max) == [0])
    #expect(try slice(4, -6, Int64.min) == [4])
    let m = try H.run1("Slice", [iota([2, 3]), H.ints([-1, -1]), H.ints([Int64.min, Int64.min]), H.ints([0, 1]), H.ints([-1, -1])])
    #expect(m.shape == [2, 3] && m.floats == [5, 4, 3, 2, 1, 0])
  }

  @Test func sliceOldAttributesAndErrors() throws {
    let x = iota([4])
    let y = try H.run1("Slice", [x], attributes: ["starts": .ints([1]), "ends": .ints([3])], opset: 9)
    #expect(y.floats == [1, 2])
    #expect(H.throwsNodeError { try H.run1("Slice", [x, H.ints([0]), H.ints([2]), H.ints([0]), H.ints([0])]) })
    #expect(H.throwsNodeError { try H.run1("Slice", [x, H.ints([0]), H.ints([2]), H.ints([1])]) })
    #expect(H.throwsNodeError { try H.run1("Slice", [x, H.ints([0, 0]), H.ints([2])]) })
    #expect(H.throwsNodeError { try H.run1("Slice", [iota([2, 2]), H.ints([0, 0]), H.ints([1, 1]), H.ints([0, -2])]) })
  }

  // MARK: Gather, GatherElements

  @Test func gatherWithNegativeIndicesAndAxes() throws {
    let x = iota([3, 4])
    let rows = try H.run1("Gather", [x, H.ints([2, 2], [0, -1, 1, 0])])
    #expect(rows.shape == [2, 2, 4])
    #expect(rows.floats == [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3])
    let cols = try H.run1("Gather", [x, H.ints([-1, 0])], attributes: ["axis": .int(-1)])
    #expect(cols.shape == [3, 2] && cols.floats == [3, 0, 7, 4, 11, 8])
    let scalar = try H.run1("Gather", [x, H.ints([], [1])])
    #expect(scalar.shape == [4] && scalar.floats == [4, 5, 6, 7])
    let idx32 = try H.run1("Gather", [H.ints([10, 20, 30]), H.typed(.int32, [2], [2, 0])])
    #expect(idx32.ints == [30, 10])
    #expect(try H.run1("Gather", [x, H.ints([0], [])]).shape == [0, 4])
  }

  @Test func gatherOutOfRangeIndexThrows() {
    let x = iota([3, 4])
    #expect(H.throwsNodeError { try H.run1("Gather", [x, H.ints([3])]) })
    #expect(H.throwsNodeError { try H.run1("Gather", [x, H.ints([-4])]) })
    #expect(H.throwsNodeError { try H.run1("Gather", [x, H.ints([0])], attributes: ["axis": .int(2)]) })
    #expect(H.throwsNodeError { try H.run1("Gather", [x, H.floats([1], [0])]) })
  }

  @Test func gatherElementsAlongBothAxes() throws {
    let x = H.floats([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9])
    let y = try H.run1("GatherElements", [x, H.ints([2, 3], [1, 2, 0, 2, 0, -3])])
    #expect(y.shape == [2, 3] && y.floats == [4, 8, 3, 7, 2, 3])
    let z = try H.run1("GatherElements", [x, H.ints([2, 2], [0, 0, 1, -1])], attributes: ["axis": .int(1)])
    #expect(z.floats == [1, 1, 5, 6])
    #expect(H.throwsNodeError { try H.run1("GatherElements", [x, H.ints([1, 1], [3])]) })
    #expect(H.throwsNodeError { try H.run1("GatherElements", [x, H.ints([1], [0])]) })
    #expect(H.throwsNodeError { try H.run1("GatherElements", [x, H.ints([1, 4], [0, 0, 0, 0])]) })
  }

  // MARK: Squeeze, Unsqueeze, Expand, Tile

  @Test func squeezeAndUnsqueezeWithInputAndAttributeAxes() throws {
    let x = iota([1, 3, 1, 2])
    #expect(try H.run1("Squeeze", [x]).shape == [3, 2])
    #expect(try H.run1("Squeeze", [x, H.ints([-2])]).shape == [1, 3, 2])
    #expect(try H.run1("Squeeze", [x], attributes: ["axes": .ints([0])], opset: 11).shape == [3, 1, 2])
    #expect(H.throwsNodeError { try H.run1("Squeeze", [x, H.ints([1])]) })
    let y = iota([3, 2])
    #expect(try H.run1("Unsqueeze", [y, H.ints([0, -1])]).shape == [1, 3, 2, 1])
    #expect(try H.run1("Unsqueeze", [y, H.ints([1])]).shape == [3, 1, 2])
    #expect(try H.run1("Unsqueeze", [y], attributes: ["axes": .ints([2])], opset: 11).shape == [3, 2, 1])
    #expect(try H.run1("Unsqueeze", [Tensor(scalar: 1), H.ints([0])]).shape == [1])
    #expect(H.throwsNodeError { try H.run1("Unsqueeze", [y, H.ints([0, 0])]) })
    #expect(H.throwsNodeError { try H.run1("Unsqueeze", [y, H.ints([3])]) })
  }

  @Test func expandBroadcastsBothWays() throws {
    let x = H.floats([3, 1], [1, 2, 3])
    let y = try H.run1("Expand", [x, H.ints([2, 1, 2])])
    #expect(y.shape == [2, 3, 2] && y.floats == [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3])
    #expect(try H.run1("Expand", [x, H.ints([1])]).shape == [3, 1])
    #expect(try H.run1("Expand", [Tensor(scalar: 7), H.ints([2, 2])]).floats == [7, 7, 7, 7])
    #expect(H.throwsNodeError { try H.run1("Expand", [x, H.ints([2, 2])]) })
    #expect(H.throwsNodeError { try H.run1("Expand", [x, H.ints([1 << 20, 1 << 20, 1])]) })
  }

  @Test func tileRepeatsEachAxis() throws {
    let x = H.floats([2, 2], [1, 2, 3, 4])
    let y = try H.run1("Tile", [x, H.ints([2, 3])])
    #expect(y.shape == [4, 6])
    let ref = (0..<24).map { i -> Float in x.floats[((i / 6) % 2) * 2 + (i % 6) % 2] }
    #expect(y.floats == ref)
    #expect(try H.run1("Tile", [x, H.ints([0, 1])]).shape == [0, 2])
    #expect(H.throwsNodeError { try H.run1("Tile", [x, H.ints([2])]) })
    #expect(H.throwsNodeError { try H.run1("Tile", [x, H.ints([-1, 1])]) })
    #expect(H.throwsNodeError { try H.run1("Tile", [x, H.ints([1 << 30, 1 << 30])]) })
  }

  // MARK: Range, ConstantOfShape, Constant

  @Test func rangeForFloatsAndIntegers() throws {
    #expect(try H.run1("Range", [H.ints([], [0]), H.ints([], [5]), H.ints([], [2])]).ints == [0, 2, 4])
    #expect(try H.run1("Range", [H.ints([], [10]), H.ints([], [4]), H.ints([], [-3])]).ints == [10, 7])
    #expect(try H.run1("Range", [H.ints([], [5]), H.ints([], [0]), H.ints([], [1])]).shape == [0])
    let f = try H.run1("Range", [Tensor(scalar: 1), Tensor(scalar: 2), Tensor(scalar: 0.25)])
    #expect(f.floats == [1, 1.25, 1.5, 1.75])
    let i32 = try H.run1("Range", [H.typed(.int32, [], [0]), H.typed(.int32, [], [3]), H.typed(.int32, [], [1])])
    #expect(i32.dtype == .int32 && i32.ints == [0, 1, 2])
    #expect(H.throwsNodeError { try H.run1("Range", [Tensor(scalar: 0), Tensor(scalar: 1), Tensor(scalar: 0)]) })
    #expect(H.throwsNodeError { try H.run1("Range", [Tensor(scalar: 0), Tensor(scalar: 1e12), Tensor(scalar: 1)]) })
    #expect(H.throwsNodeError { try H.run1("Range", [H.ints([], [Int64.min]), H.ints([], [Int64.max]), H.ints([], [1])]) })
    #expect(H.throwsNodeError { try H.run1("Range", [Tensor(scalar: 0), H.ints([], [1]), Tensor(scalar: 1)]) })
  }

  @Test func constantOfShapeUsesValueType() throws {
    let z = try H.run1("ConstantOfShape", [H.ints([2, 3])])
    #expect(z.dtype == .float32 && z.shape == [2, 3] && z.floats == [Float](repeating: 0, count: 6))
    let v = try H.run1("ConstantOfShape", [H.ints([2])], attributes: ["value": .tensor(H.ints([1], [7]))])
    #expect(v.dtype == .int64 && v.ints == [7, 7])
    let s = try H.run1("ConstantOfShape", [H.ints([0], [])])
    #expect(s.shape == [] && s.floats == [0])
    #expect(H.throwsNodeError { try H.run1("ConstantOfShape", [H.ints([1 << 20, 1 << 20])]) })
    #expect(H.throwsNodeError { try H.run1("ConstantOfShape", [H.ints([-1])]) })
  }

  @Test func constantFromEachAttributeKind() throws {
    let t = H.floats([2], [1, 2])
    #expect(try H.run1("Constant", [], attributes: ["value": .tensor(t)]) == t)
    #expect(try H.run1("Constant", [], attributes: ["value_float": .float(1.5)]) == Tensor(scalar: 1.5))
    #expect(try H.run1("Constant", [], attributes: ["value_floats": .floats([1, 2])]) == t)
    #expect(try H.run1("Constant", [], attributes: ["value_int": .int(3)]) == H.ints([], [3]))
    #expect(try H.run1("Constant", [], attributes: ["value_ints": .ints([3, 4])]) == H.ints([3, 4]))
    #expect(H.throwsNodeError { try H.run1("Constant", []) })
    #expect(H.throwsNodeError { try H.run1("Constant", [], attributes: ["value_int": .int(1), "value_float": .float(1)]) })
    #expect(H.throwsNodeError { try H.run1("Constant", [], attributes: ["value_string": .string("a")]) })
  }

  // MARK: Pad, Trilu

  @Test func padModesMatchNumpy() throws {
    let x = H.floats([3], [1, 2, 3])
    func pad(_ mode: String, _ pads: [Int64]) throws -> [Float] {
      try H.run1("Pad", [x, H.ints(pads)], attributes: ["mode": .string(mode)]).floats
    }
    #expect(try pad("constant", [2, 1]) == [0, 0, 1, 2, 3, 0])
    #expect(try pad("edge", [2, 1]) == [1, 1, 1, 2, 3, 3])
    #expect(try pad("reflect", [2, 1]) == [3, 2, 1, 2, 3, 2])
    #expect(try pad("wrap", [2, 1]) == [2, 3, 1, 2, 3, 1])
    #expect(try pad("reflect", [5, 0]) == [2, 1, 2, 3, 2, 1, 2, 3])
    #expect(try pad("constant", [-1, 1]) == [2, 3, 0])
    let v = try H.run1("Pad", [x, H.ints([1, 1]), Tensor(scalar: 9)])
    #expect(v.floats == [9, 1, 2, 3, 9])
  }

  @Test func pad2DWithAxesAndOldAttributes() throws {
    let x = H.floats([2, 2], [1, 2, 3, 4])
    let y = try H.run1("Pad", [x, H.ints([1, 0, 0, 1])])
    #expect(y.shape == [3, 3] && y.floats == [0, 0, 0, 1, 2, 0, 3, 4, 0])
    let a = try H.run1("Pad", [x, H.ints([1, 1]), nil, H.ints([-1])], attributes: ["mode": .string("edge")], opset: 18)
    #expect(a.shape == [2, 4] && a.floats == [1, 1, 2, 2, 3, 3, 4, 4])
    let old = try H.run1("Pad", [x], attributes: ["pads": .ints([0, 1, 0, 0]), "value": .float(5)], opset: 2)
    #expect(old.floats == [5, 1, 2, 5, 3, 4])
    let ints = try H.run1("Pad", [H.ints([1, 2]), H.ints([1, 0])])
    #expect(ints.ints == [0, 1, 2])
  }

  @Test func padRejectsBadInput() {
    let x = H.floats([2], [1, 2])
    #expect(H.throwsNodeError { try H.run1("Pad", [x, H.ints([1])]) })
    #expect(H.throwsNodeError { try H.run1("Pad", [x, H.ints([-2, -1])]) })
    #expect(H.throwsNodeError { try H.run1("Pad", [x, H.ints([1, 1])], attributes: ["mode": .string("mirror")]) })
    #expect(H.throwsNodeError { try H.run1("Pad", [H.floats([0], []), H.ints([1, 1])], attributes: ["mode": .string("edge")]) })
    #expect(H.throwsNodeError { try H.run1("Pad", [x, H.ints([1, 1]), H.ints([], [1])]) })
    #expect(H.throwsNodeError { try H.run1("Pad", [x, H.ints([1 << 40, 0])]) })
  }

  @Test func triluUpperAndLowerWithDiagonalOffset() throws {
    let x = H.floats([3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9])
    #expect(try H.run1("Trilu", [x]).floats == [1, 2, 3, 0, 5, 6, 0, 0, 9])
    #expect(try H.run1("Trilu", [x], attributes: ["upper": .int(0)]).floats == [1, 0, 0, 4, 5, 0, 7, 8, 9])
    #expect(try H.run1("Trilu", [x, H.ints([], [1])]).floats == [0, 2, 3, 0, 0, 6, 0, 0, 0])
    #expect(try H.run1("Trilu", [x, H.ints([], [-1])], attributes: ["upper": .int(0)]).floats == [0, 0, 0, 4, 0, 0, 7, 8, 0])
    let batched = try H.run1("Trilu", [iota([2, 2, 3])])
    #expect(batched.floats == [0, 1, 2, 0, 4, 5, 6, 7, 8, 0, 10, 11])
    #expect(H.throwsNodeError { try H.run1("Trilu", [iota([3])]) })
  }

  // MARK: Laws

  @Test("Transpose by perm then by its inverse is the identity", arguments: [[2, 0, 1], [1, 2, 0], [0, 2, 1], [2, 1, 0]])
  func transposeInverseRoundTrip(perm: [Int]) throws {
    let x = randomTensor([3, 4, 5], seed: 21)
    var inverse = [Int](repeating: 0, count: 3)
    for (i, p) in perm.enumerated() { inverse[p] = i }
    let y = try H.run1("Transpose", [x], attributes: ["perm": .ints(perm)])
    #expect(try H.run1("Transpose", [y], attributes: ["perm": .ints(inverse)]) == x)
  }

  @Test("Split then Concat along the same axis is the identity", arguments: [0, 1, 2, -1])
  func splitConcatRoundTrip(axis: Int) throws {
    let x = randomTensor([4, 6, 3], seed: 22)
    let dim = x.shape[axis < 0 ? axis + 3 : axis]
    let sizes: [Int64] = [1, Int64(dim - 3), 2]
    let parts = try H.run("Split", [x, H.ints(sizes)], attributes: ["axis": .int(axis)], outputs: 3)
    #expect(try H.run1("Concat", parts, attributes: ["axis": .int(axis)]) == x)
  }

  @Test func gatherOfAFullRangeIsTheIdentityAndReversedSliceIsGatherOfReversedRange() throws {
    let x = randomTensor([5, 3], seed: 23)
    let all = try H.run1("Range", [H.ints([], [0]), H.ints([], [5]), H.ints([], [1])])
    #expect(try H.run1("Gather", [x, all]) == x)
    let reversed = try H.run1("Range", [H.ints([], [4]), H.ints([], [-1]), H.ints([], [-1])])
    let sliced = try H.run1("Slice", [x, H.ints([-1]), H.ints([Int64.min]), H.ints([0]), H.ints([-1])])
    #expect(try H.run1("Gather", [x, reversed]) == sliced)
  }

  @Test func hugeBroadcastsThrowInsteadOfAllocating() {
    let a = H.floats([1 << 16, 1], [Float](repeating: 1, count: 1 << 16))
    let b = H.floats([1, 1 << 16], [Float](repeating: 1, count: 1 << 16))
    #expect(H.throwsNodeError { try H.run1("Add", [a, b]) })
    #expect(H.throwsNodeError { try H.run1("Where", [H.bools([1], [true]), a, b]) })
  }
}

/// ScatterND and ScatterElements, on the ONNX operator documentation's examples.
@Suite("Scatter kernels")
struct ScatterOpsTests {
  @Test func scatterNDReplacesElementsAndSlices() throws {
    let data = Tensor(shape: [8], floats: [1, 2, 3, 4, 5, 6, 7, 8])
    let y = try H.run1("ScatterND", [data, Tensor(shape: [4, 1], ints: [4, 3, 1, -1]), Tensor(shape: [4], floats: [9, 10, 11, 12])])
    #expect(y.floats == [1, 11, 3, 10, 9, 6, 7, 12])
    // Whole rows of a [2, 3] matrix, and the add reduction (opset 16).
    let m = Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
    let rows = try H.run1("ScatterND", [m, Tensor(shape: [1, 1], ints: [1]), Tensor(shape: [1, 3], floats: [7, 8, 9])])
    #expect(rows.floats == [1, 2, 3, 7, 8, 9])
    let added = try H.run1("ScatterND", [m, Tensor(shape: [2, 2], ints: [0, 0, 0, 0]), Tensor(shape: [2], floats: [10, 20])],
                           attributes: ["reduction": .string("add")])
    #expect(added.floats == [31, 2, 3, 4, 5, 6])
    // int64 data combines in int64: 2^40 + 1 is exact.
    let big = try H.run1("ScatterND", [Tensor(shape: [2], ints: [1 << 40, 5]), Tensor(shape: [1, 1], ints: [0]),
                                       Tensor(shape: [1], ints: [1])], attributes: ["reduction": .string("add")])
    #expect(big.ints == [(1 << 40) + 1, 5])
    #expect(throws: LowbitError.self) {
      try H.run1("ScatterND", [data, Tensor(shape: [1, 1], ints: [8]), Tensor(shape: [1], floats: [0])])
    }
  }

  @Test func scatterElementsWritesAlongTheAxis() throws {
    let data = Tensor(shape: [1, 5], floats: [1, 2, 3, 4, 5])
    let y = try H.run1("ScatterElements", [data, Tensor(shape: [1, 2], ints: [1, 3]), Tensor(shape: [1, 2], floats: [1.1, 2.1])],
                       attributes: ["axis": .int(1)])
    #expect(y.floats == [1, 1.1, 3, 2.1, 5])
    let zeros = Tensor(shape: [3, 3], floats: [Float](repeating: 0, count: 9))
    let z = try H.run1("ScatterElements", [zeros, Tensor(shape: [2, 3], ints: [1, 0, 2, 0, 2, 1]),
                                           Tensor(shape: [2, 3], floats: [1, 1.1, 1.2, 2, 2.1, 2.2])])
    #expect(z.floats == [2, 1.1, 0, 1, 0, 2.2, 0, 2.1, 1.2])
  }
}
