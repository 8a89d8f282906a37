import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

@Suite("Elementwise binary kernels")
struct ElementwiseBinaryTests {
  static let shapePairs: [([Int], [Int])] = [
    ([2, 3, 4], [2, 3, 4]),
    ([2, 3, 4], [3, 1]),
    ([3, 1], [2, 3, 4]),
    ([], [2, 3]),
    ([2, 3], []),
    ([1], [5]),
    ([4, 1, 3], [1, 5, 1]),
    ([2, 3, 5, 5], [3, 1, 1]),
    ([2, 1, 4], [2, 3, 1]),
    ([0, 3], [1, 3]),
    ([2, 0, 3], [3]),
    ([48, 64, 16], [64, 1]),
    ([2, 64, 16, 16], [64, 1, 1]),
  ]

  @Test("float Add/Sub/Mul/Div match a per-element broadcasting reference", arguments: shapePairs)
  func floatArithmeticBroadcasts(shapes: ([Int], [Int])) throws {
    let a = randomTensor(shapes.0, seed: 1)
    let b = randomTensor(shapes.1, seed: 2, in: 0.5...2)
    let ops: [(String, (Float, Float) -> Float)] = [("Add", +), ("Sub", -), ("Mul", *), ("Div", /)]
    for (name, op) in ops {
      let y = try H.run1(name, [a, b])
      let ref = H.broadcastReference(a.floats, a.shape, b.floats, b.shape, op)
      #expect(y.shape == ref.shape, "\(name) \(shapes)")
      #expect(y.floats == ref.values, "\(name) \(shapes)")
      #expect(y.dtype == .float32)
    }
  }

  @Test("int Add/Sub/Mul match the reference", arguments: shapePairs.prefix(9))
  func intArithmeticBroadcasts(shapes: ([Int], [Int])) throws {
    let a = H.ints(shapes.0, (0..<shapes.0.reduce(1, *)).map { Int64($0) - 7 })
    let b = H.ints(shapes.1, (0..<shapes.1.reduce(1, *)).map { Int64($0 * 3) + 1 })
    let ops: [(String, (Int64, Int64) -> Int64)] = [("Add", +), ("Sub", -), ("Mul", *)]
    for (name, op) in ops {
      let y = try H.run1(name, [a, b])
      let ref = H.broadcastReference(a.ints, a.shape, b.ints, b.shape, op)
      #expect(y.shape == ref.shape && y.ints == ref.values, "\(name) \(shapes)")
    }
  }

  @Test func incompatibleShapesThrowNamingTheNode() {
    #expect(throws: LowbitError.self) { try H.run1("Add", [randomTensor([2, 3], seed: 1), randomTensor([4], seed: 2)]) }
    #expect(H.throwsNodeError { try H.run1("Mul", [randomTensor([2, 3], seed: 1), randomTensor([2, 2], seed: 2)]) })
  }

  @Test func mixedTypesThrow() {
    #expect(H.throwsNodeError { try H.run1("Add", [H.floats([1], [1]), H.ints([1], [1])]) })
    #expect(H.throwsNodeError { try H.run1("Add", [H.bools([1], [true]), H.bools([1], [true])]) })
  }

  @Test func integerDivisionTruncatesTowardZero() throws {
    let y = try H.run1("Div", [H.ints([7, -7, 7, -7, 0]), H.ints([2, 2, -2, -2, 3])])
    #expect(y.ints == [3, -3, -3, 3, 0])
    let extreme = try H.run1("Div", [H.ints([Int64.min]), H.ints([-1])])
    #expect(extreme.ints == [Int64.min])
  }

  @Test func integerDivisionByZeroThrows() {
    #expect(H.throwsNodeError { try H.run1("Div", [H.ints([1, 2]), H.ints([1, 0])]) })
    #expect(H.throwsNodeError { try H.run1("Mod", [H.ints([1, 2]), H.ints([0])]) })
  }

  @Test func floatDivisionByZeroGivesInfinity() throws {
    let y = try H.run1("Div", [H.floats([3], [1, -1, 0]), H.floats([], [0])])
    #expect(y.floats[0] == .infinity && y.floats[1] == -.infinity && y.floats[2].isNaN)
  }

  @Test func narrowIntegersWrapLikeC() throws {
    let a = H.typed(.int8, [2], [127, -128])
    let b = H.typed(.int8, [2], [1, -1])
    let y = try H.run1("Add", [a, b])
    #expect(y.dtype == .int8 && y.ints == [-128, 127])
    let u = try H.run1("Sub", [H.typed(.uint8, [1], [0]), H.typed(.uint8, [1], [1])])
    #expect(u.ints == [255])
  }

  @Test func modFollowsDivisorSignUnlessFmod() throws {
    let a = H.ints([-7, 7, -7, 7])
    let b = H.ints([3, -3, -3, 3])
    #expect(try H.run1("Mod", [a, b]).ints == [2, -2, -1, 1])
    #expect(try H.run1("Mod", [a, b], attributes: ["fmod": .int(1)]).ints == [-1, 1, -1, 1])
    let f = try H.run1("Mod", [H.floats([2], [-7.5, 7.5]), H.floats([1], [2])], attributes: ["fmod": .int(1)])
    #expect(f.floats == [-1.5, 1.5])
    #expect(H.throwsNodeError { try H.run1("Mod", [H.floats([1], [1]), H.floats([1], [1])]) })
  }

  @Test func powCoversFloatAndIntegerExponents() throws {
    let x = H.floats([4], [2, -2, 4, 0.5])
    #expect(try H.run1("Pow", [x, H.floats([], [2])]).floats == [4, 4, 16, 0.25])
    #expect(try H.run1("Pow", [x, H.ints([], [3])]).floats == [8, -8, 64, 0.125])
    #expect(try H.run1("Pow", [H.floats([1], [4]), H.floats([1], [0.5])]).floats == [2])
    let i = try H.run1("Pow", [H.ints([2, -3, 5, 1, -1]), H.ints([10, 3, 0, -2, -3])])
    #expect(i.ints == [1024, -27, 1, 1, -1])
    #expect(try H.run1("Pow", [H.ints([9]), H.floats([1], [0.5])]).ints == [3])
  }

  @Test func comparisonsBroadcastToBool() throws {
    let a = H.floats([2, 3], [1, 2, 3, 4, 5, 6])
    let b = H.floats([3], [2, 2, 7])
    let cases: [(String, (Float, Float) -> Bool)] = [
      ("Equal", ==), ("Less", <), ("LessOrEqual", <=), ("Greater", >), ("GreaterOrEqual", >=),
    ]
    for (name, op) in cases {
      let y = try H.run1(name, [a, b])
      #expect(y.dtype == .bool && y.shape == [2, 3])
      #expect(y.bools == H.broadcastReference(a.floats, a.shape, b.floats, b.shape, op).values, "\(name)")
    }
    #expect(try H.run1("Less", [H.ints([1, 5]), H.ints([3])]).bools == [true, false])
    #expect(try H.run1("Equal", [H.bools([2], [true, false]), H.bools([1], [true])]).bools == [true, false])
    #expect(H.throwsNodeError { try H.run1("Less", [H.bools([1], [true]), H.bools([1], [true])]) })
  }

  @Test func nanComparesUnequal() throws {
    let y = try H.run1("Equal", [H.floats([1], [.nan]), H.floats([1], [.nan])])
    #expect(y.bools == [false])
  }

  @Test func logicalOpsFollowTruthTables() throws {
    let a = H.bools([4], [false, false, true, true])
    let b = H.bools([4], [false, true, false, true])
    #expect(try H.run1("And", [a, b]).bools == [false, false, false, true])
    #expect(try H.run1("Or", [a, b]).bools == [false, true, true, true])
    #expect(try H.run1("Xor", [a, b]).bools == [false, true, true, false])
    #expect(try H.run1("Not", [a]).bools == [true, true, false, false])
    #expect(try H.run1("And", [H.bools([2, 1], [true, false]), H.bools([2], [true, true])]).bools == [true, true, false, false])
    #expect(H.throwsNodeError { try H.run1("And", [H.floats([1], [1]), H.floats([1], [1])]) })
  }

  @Test func variadicMaxMinSumMeanBroadcast() throws {
    let a = H.floats([2, 1], [1, 5])
    let b = H.floats([3], [0, 3, 6])
    let c = H.floats([], [2])
    #expect(try H.run1("Max", [a, b, c]).floats == [2, 3, 6, 5, 5, 6])
    #expect(try H.run1("Min", [a, b, c]).floats == [0, 1, 1, 0, 2, 2])
    #expect(try H.run1("Sum", [a, b, c]).floats == [3, 6, 9, 7, 10, 13])
    #expect(try H.run1("Mean", [a, b, c]).floats == [1, 2, 3, 7.0 / 3, 10.0 / 3, 13.0 / 3])
    #expect(try H.run1("Max", [a]).floats == [1, 5])
    #expect(try H.run1("Max", [H.ints([1, 9]), H.ints([4])]).ints == [4, 9])
  }

  @Test func maxAndMinPropagateNaN() throws {
    let y = try H.run1("Max", [H.floats([2], [.nan, 1]), H.floats([2], [1, .nan])])
    #expect(y.floats.allSatisfy { $0.isNaN })
    let z = try H.run1("Min", [H.floats([2], [.nan, 1]), H.floats([2], [1, .nan])])
    #expect(z.floats.allSatisfy { $0.isNaN })
  }

  @Test func whereBroadcastsAllThreeInputs() throws {
    let cond = H.bools([2, 1], [true, false])
    let x = H.floats([1, 3], [1, 2, 3])
    let y = H.floats([], [-1])
    let out = try H.run1("Where", [cond, x, y])
    #expect(out.shape == [2, 3])
    #expect(out.floats == [1, 2, 3, -1, -1, -1])
    let ints = try H.run1("Where", [H.bools([3], [true, false, true]), H.ints([1], [7]), H.ints([3], [1, 2, 3])])
    #expect(ints.ints == [7, 2, 7])
    #expect(H.throwsNodeError { try H.run1("Where", [H.floats([1], [1]), x, y]) })
    #expect(H.throwsNodeError { try H.run1("Where", [H.bools([2], [true, false]), x, y]) })
  }

  @Test func whereOnLargeTensorsMatchesReference() throws {
    let x = randomTensor([32, 64, 32], seed: 3)
    let cond = Tensor(shape: [64, 1], bools: (0..<64).map { $0 % 3 == 0 })
    let out = try H.run1("Where", [cond, x, Tensor(scalar: 0)])
    let ref = (0..<x.count).map { i in (i / 32) % 64 % 3 == 0 ? x.floats[i] : 0 }
    #expect(out.floats == ref)
  }

  @Test func preluUsesPerChannelSlope() throws {
    let x = H.floats([1, 2, 2], [-1, 2, -3, 4])
    let slope = H.floats([2, 1], [0.5, 0.25])
    #expect(try H.run1("PRelu", [x, slope]).floats == [-0.5, 2, -0.75, 4])
    #expect(H.throwsNodeError { try H.run1("PRelu", [H.floats([2], [1, 2]), H.floats([2, 2], [1, 1, 1, 1])]) })
  }

  @Test func emptyOperandsGiveEmptyResults() throws {
    let y = try H.run1("Add", [H.floats([0, 3], []), H.floats([3], [1, 2, 3])])
    #expect(y.shape == [0, 3] && y.count == 0)
    let z = try H.run1("Div", [H.ints([0], []), H.ints([1], [0])])
    #expect(z.shape == [0])
  }

  @Test func scalarsStayZeroDimensional() throws {
    let y = try H.run1("Mul", [Tensor(scalar: 3), Tensor(scalar: 4)])
    #expect(y.shape == [] && y.floats == [12])
  }
}
