import Foundation
import LowbitCore
import Testing

@testable import LowbitData

@Suite struct NPYTests {
  @Test(arguments: expectedArrays.map(\.code))
  func readsNumpyFiles(code: String) throws {
    let expected = try #require(expectedArrays.first { $0.code == code }).tensor
    let tensor = try NPY.read(contentsOf: fixture("\(code).npy"))
    #expect(tensor == expected)
  }

  @Test(arguments: expectedArrays.map(\.code))
  func encodesLikeNumpy(code: String) throws {
    let tensor = try #require(expectedArrays.first { $0.code == code }).tensor
    let numpy = try fixtureBytes("\(code).npy")
    let ours = NPY.encode(tensor)
    // Same header byte for byte; float64 data differs because lowbit holds it as Float.
    #expect(ours.count == numpy.count)
    #expect(ours.prefix(128) == numpy.prefix(128))
    if code != "f8" { #expect(ours == numpy) }
    #expect(try NPY.decode(ours, name: "round trip") == tensor)
  }

  @Test(arguments: DType.allCases)
  func roundTripsEveryDType(dtype: DType) throws {
    let tensor: Tensor
    switch dtype.storageClass {
    case .float:
      tensor = Tensor(
        dtype: dtype, shape: [3, 1, 2], storage: .float([0, -1, 0.5, 2, 1024, -0.25]))
    case .bool: tensor = Tensor(shape: [3, 2], bools: [true, false, false, true, true, true])
    case .int:
      let range = try #require(dtype.integerRange)
      tensor = Tensor(
        dtype: dtype, shape: [2, 2], storage: .int([range.lowerBound, 0, 1, range.upperBound]))
    }
    let back = try NPY.decode(NPY.encode(tensor), name: "t")
    // 4-bit types are written widened to one byte; bfloat16 (not a NumPy type) as float32.
    let expectedDType: DType = dtype == .int4 ? .int8 : dtype == .uint4 ? .uint8 : dtype == .bfloat16 ? .float32 : dtype
    #expect(back == Tensor(dtype: expectedDType, shape: tensor.shape, storage: tensor.storage))
  }

  @Test func narrowArraysStayAtTheirWidthInMemory() throws {
    let images = Tensor(dtype: .uint8, shape: [2, 3], storage: .int([0, 7, 255, 128, 1, 2]))
    let back = try NPY.decode(NPY.encode(images), name: "images")
    #expect(back.isPacked && back.heldBytes == 6 && back.ints == [0, 7, 255, 128, 1, 2])
  }

  @Test func uint64AboveTheInt64RangeIsRefusedWithItsValue() throws {
    // Written from the packed bytes as they are; read back, the value cannot be computed with.
    let big = Tensor(dtype: .uint64, shape: [2], rawBytes: [UInt64(7), .max].map(\.littleEndian).withUnsafeBytes { Array($0) })!
    let error = #expect(throws: LowbitError.self) { try NPY.decode(NPY.encode(big), name: "big.npy") }
    #expect(error?.description.contains("18446744073709551615 at flat index 1") == true)
  }

  @Test func roundTripsScalarsAndEmptyArrays() throws {
    for tensor in [
      Tensor(scalar: 2.5), Tensor(shape: [0, 3], floats: []),
      Tensor(shape: [7], ints: Array(0..<7)),
    ] {
      #expect(try NPY.decode(NPY.encode(tensor), name: "t") == tensor)
    }
    #expect(try NPY.read(contentsOf: fixture("scalar.npy")) == Tensor(scalar: 3.5))
    #expect(try NPY.read(contentsOf: fixture("empty.npy")) == Tensor(shape: [0, 3], floats: []))
  }

  @Test func headerIsPaddedToSixtyFourBytes() {
    let bytes = NPY.encode(Tensor(shape: [2, 3], floats: Array(repeating: 1, count: 6)))
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    #expect((10 + headerLength) % 64 == 0)
    #expect(bytes[10 + headerLength - 1] == UInt8(ascii: "\n"))
  }

  @Test func readsVersionsTwoAndThree() throws {
    let expected = try #require(expectedArrays.first { $0.code == "f4" }).tensor
    #expect(try NPY.read(contentsOf: fixture("v2.npy")) == expected)
    #expect(try NPY.read(contentsOf: fixture("v3.npy")) == expected)
  }

  @Test func decodesHandBuiltHeader() throws {
    let values: [Float] = [1, 2, 3, -4, 5.5, 0]
    let bytes = npyBytes(
      header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      data: float32Bytes(values))
    #expect(bytes.count == 128 + 24)
    #expect(try NPY.decode(bytes, name: "hand") == Tensor(shape: [2, 3], floats: values))
  }

  @Test(arguments: [
    // double quotes, no trailing comma
    "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
    "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False}",  // other key order
    "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L),}",  // Python 2 longs, no spaces
    "{ 'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }",  // whitespace
    "{'descr': '<f4', 'fortran_order': True, 'shape': (6,)}",  // Fortran order is moot in 1-D
  ])
  func parsesHeaderVariants(header: String) throws {
    let bytes = npyBytes(header: header, data: float32Bytes([1, 2, 3, 4, 5, 6]))
    let tensor = try NPY.decode(bytes, name: "variant")
    #expect(tensor.floats == [1, 2, 3, 4, 5, 6])
  }

  @Test func parsesPythonLiterals() throws {
    #expect(try PythonLiteral.parse("(5,)", name: "t") == .tuple([.int(5)]))
    #expect(try PythonLiteral.parse("()", name: "t") == .tuple([]))
    #expect(try PythonLiteral.parse("(5)", name: "t") == .int(5))
    #expect(
      try PythonLiteral.parse("['a', \"b\\'c\", None]", name: "t")
        == .list([.string("a"), .string("b'c"), .none]))
    #expect(try PythonLiteral.parse("{'k': {'n': -3}}", name: "t")["k"]?["n"] == .int(-3))
  }

  @Test(arguments: ["fortran", "bigendian", "object", "structured", "unicode"])
  func refusesUnsupportedNumpyFiles(name: String) {
    #expect(throws: LowbitError.self) { try NPY.read(contentsOf: fixture("\(name).npy")) }
  }

  @Test func refusesBigEndianWithAHint() {
    do {
      _ = try NPY.read(contentsOf: fixture("bigendian.npy"))
      Issue.record("expected an error")
    } catch let error as LowbitError {
      #expect(error.kind == .unsupported)
      #expect(error.message.contains("bigendian.npy") && error.message.contains("big-endian"))
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  static let hostileHeaders: [String] = [
    // 4 TB of data claimed, then a product that overflows Int
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000, 10000000000), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000000000000000000000,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 6), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }",
    "{'descr': '<f4', 'fortran_order': False, }",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } trailing",
    "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }",
    "{'descr': '<f3', 'fortran_order': False, 'shape': (2, 3), }",
    "{'descr': 'f', 'fortran_order': False, 'shape': (2, 3), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': __import__('os'), }",
    "('descr', '<f4')",
    "{'descr': '<f4\\x4', 'fortran_order': False, 'shape': (2, 3), }",
    String(repeating: "(", count: 1000),
    "",
  ]

  @Test(arguments: hostileHeaders)
  func refusesHostileHeaders(header: String) {
    let bytes = npyBytes(header: header, data: float32Bytes([1, 2, 3, 4, 5, 6]))
    #expect(throws: LowbitError.self) { try NPY.decode(bytes, name: "hostile") }
  }

  @Test func refusesBrokenFraming() throws {
    let good = NPY.encode(Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]))
    let cases: [[UInt8]] = [
      [], Array(good.prefix(5)), Array(good.prefix(9)), Array(good.prefix(100)),
      Array(good.dropLast()),  // truncated data
      good + [0],  // a stray byte after the data
      [0x93] + Array("NUMPX".utf8) + Array(good.dropFirst(6)),  // bad magic
      Array(good.prefix(6)) + [4, 0] + Array(good.dropFirst(8)),  // version 4.0
      // header length past the end
      Array(good.prefix(8)) + [0xff, 0xff] + Array(good.dropFirst(10)),
      Array(good.prefix(6)) + [2, 0, 0xff, 0xff, 0xff, 0xff] + Array(good.dropFirst(10)),
    ]
    for bytes in cases {
      #expect(throws: LowbitError.self) { try NPY.decode(bytes, name: "framing") }
    }
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<200 {
      var noisy = good
      noisy[Int.random(in: 0..<128, using: &generator)] = UInt8.random(
        in: 0...255, using: &generator)
      _ = try? NPY.decode(noisy, name: "noise")  // may or may not throw, must not crash
    }
  }

  @Test func refusesUInt64BeyondInt64() {
    let data: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0x80]
    let bytes = npyBytes(
      header: "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }", data: data)
    #expect(throws: LowbitError.self) { try NPY.decode(bytes, name: "u8") }
  }

  @Test func writesAtomically() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("x.npy").path
    let first = Tensor(shape: [2], floats: [1, 2])
    let second = Tensor(shape: [3], ints: [4, 5, 6])
    try NPY.write(first, to: path)
    #expect(try NPY.read(contentsOf: path) == first)
    try NPY.write(second, to: path)
    #expect(try NPY.read(contentsOf: path) == second)
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["x.npy"])
    #expect(throws: LowbitError.self) {
      try NPY.write(first, to: directory.appendingPathComponent("missing/x.npy").path)
    }
    #expect(throws: LowbitError.self) {
      try NPY.read(contentsOf: directory.appendingPathComponent("nope.npy").path)
    }
    #expect(throws: LowbitError.self) { try NPY.read(contentsOf: directory.path) }
  }
}

/// SplitMix64, local so these tests do not depend on LowbitTestSupport's API.
struct SeededGeneratorForTests: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
