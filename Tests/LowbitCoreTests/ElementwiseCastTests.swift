import LowbitCore
import Testing

private typealias H = KernelHarness

@Suite("Cast, CastLike and Identity")
struct ElementwiseCastTests {
  private func cast(_ x: Tensor, _ to: DType) throws -> Tensor {
    try H.run1("Cast", [x], attributes: ["to": .int(to.rawValue)])
  }

  @Test func floatToIntegerTruncatesTowardZero() throws {
    let x = H.floats([6], [2.7, -2.7, 0.5, -0.5, 1e10, .nan])
    let y = try cast(x, .int32)
    #expect(y.dtype == .int32 && y.ints == [2, -2, 0, 0, Int64(Int32.max), 0])
    #expect(try cast(x, .int64).ints == [2, -2, 0, 0, 10_000_000_000, 0])
  }

  @Test func floatToNarrowIntegersClamps() throws {
    let x = H.floats([5], [300, -300, 127.9, -128.9, -.infinity])
    #expect(try cast(x, .int8).ints == [127, -128, 127, -128, -128])
    #expect(try cast(x, .uint8).ints == [255, 0, 127, 0, 0])
    #expect(try cast(x, .int4).ints == [7, -8, 7, -8, -8])
    #expect(try cast(x, .uint4).ints == [15, 0, 15, 0, 0])
    #expect(try cast(H.floats([1], [.infinity]), .int64).ints == [Int64.max])
  }

  @Test func integerToIntegerWrapsLikeC() throws {
    let x = H.ints([300, -1, 128])
    #expect(try cast(x, .uint8).ints == [44, 255, 128])
    #expect(try cast(x, .int8).ints == [44, -1, -128])
    #expect(try cast(x, .int4).ints == [7, -1, 7])
    #expect(try cast(H.ints([70000]), .int16).ints == [4464])
  }

  @Test func boolConversions() throws {
    let x = H.floats([4], [0, -0.0, 0.1, .nan])
    #expect(try cast(x, .bool).bools == [false, false, true, true])
    #expect(try cast(H.ints([0, 5]), .bool).bools == [false, true])
    let b = H.bools([2], [true, false])
    #expect(try cast(b, .float32).floats == [1, 0])
    #expect(try cast(b, .int64).ints == [1, 0])
  }

  @Test func float16RoundsToHalfPrecision() throws {
    let x = H.floats([4], [1 + 1.0 / 2048, 1 + 3.0 / 2048, 65520, 0.1])
    let y = try cast(x, .float16)
    #expect(y.dtype == .float16)
    #expect(y.floats[0] == 1)  // tie to even
    #expect(y.floats[1] == 1 + 2.0 / 1024)  // tie to even, upward
    #expect(y.floats[2] == .infinity)
    #expect(y.floats[3] == 0.0999755859375)
    let back = try cast(y, .float32)
    #expect(try cast(back, .float16).floats[3] == y.floats[3])
  }

  @Test func roundTripsPreserveRepresentableValues() throws {
    let i8 = H.typed(.int8, [4], [-128, -1, 0, 127])
    #expect(try cast(try cast(i8, .float32), .int8) == i8)
    #expect(try cast(try cast(i8, .int64), .int8) == i8)
    let u8 = H.typed(.uint8, [3], [0, 128, 255])
    #expect(try cast(try cast(u8, .float16), .uint8) == u8)
    let f = H.floats([3], [-2, 0, 3])
    #expect(try cast(try cast(f, .int32), .float32) == f)
  }

  @Test("every DType is a valid target", arguments: DType.allCases)
  func castToEveryType(to: DType) throws {
    let x = H.floats([2, 2], [0, 1, 2, 3])
    let y = try cast(x, to)
    #expect(y.dtype == to && y.shape == [2, 2])
    let back = try cast(y, .float32)
    #expect(back.floats == (to == .bool ? [0, 1, 1, 1] : [0, 1, 2, 3]))
  }

  @Test func unknownTargetTypeThrows() {
    // 8 is STRING, which lowbit does not hold.
    #expect(H.throwsNodeError { try H.run1("Cast", [H.floats([1], [1])], attributes: ["to": .int(8)]) })
    #expect(H.throwsNodeError { try H.run1("Cast", [H.floats([1], [1])]) })
  }

  @Test func castLikeAndIdentity() throws {
    let x = H.floats([2], [1.5, -1.5])
    let y = try H.run1("CastLike", [x, H.typed(.int16, [0], [])])
    #expect(y.dtype == .int16 && y.ints == [1, -1])
    let e = H.floats([0, 3], [])
    #expect(try H.run1("Identity", [e]) == e)
  }
}
