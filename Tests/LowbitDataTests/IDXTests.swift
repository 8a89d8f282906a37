import Foundation
import LowbitCore
import Testing

@testable import LowbitData

/// IDX bytes: header for `shape` and `typeByte`, then `data` (already big-endian).
func idxBytes(typeByte: UInt8, shape: [UInt32], data: [UInt8]) -> [UInt8] {
  [0, 0, typeByte, UInt8(shape.count)]
    + shape.flatMap { d in (0..<4).map { UInt8(truncatingIfNeeded: d >> (24 - 8 * $0)) } } + data
}

@Suite struct IDXTests {
  static let fashionDirectory = DataSpec.defaultFashionMNISTDirectory
  static var hasFashionMNIST: Bool {
    FileManager.default.fileExists(atPath: fashionDirectory + "/t10k-images-idx3-ubyte.gz")
  }

  @Test func readsGzipImagesAndLabels() throws {
    let images = try IDX.read(contentsOf: fixture("images.idx3.gz"))
    #expect(images == Tensor(shape: [3, 2, 2], floats: (0..<12).map { Float($0 * 20) }))
    let labels = try IDX.read(contentsOf: fixture("labels.idx1.gz"))
    #expect(labels == Tensor(shape: [3], ints: [7, 0, 9]))
    #expect(try IDX.read(contentsOf: fixture("images.idx3.gz"), limit: 2).shape == [2, 2, 2])
    #expect(try IDX.read(contentsOf: fixture("labels.idx1.gz"), limit: 10).shape == [3])
  }

  @Test func readsEveryElementType() throws {
    let u8 = idxBytes(typeByte: 0x08, shape: [3], data: [0, 128, 255])
    #expect(try IDX.decode(u8, name: "u8") == Tensor(shape: [3], ints: [0, 128, 255]))
    let i8 = idxBytes(typeByte: 0x09, shape: [1, 2], data: [0xff, 0x7f])
    #expect(try IDX.decode(i8, name: "i8") == Tensor(shape: [1, 2], floats: [-1, 127]))
    let i16 = idxBytes(typeByte: 0x0B, shape: [2], data: [0x80, 0x00, 0x01, 0x02])
    #expect(try IDX.decode(i16, name: "i16") == Tensor(shape: [2], ints: [-32768, 258]))
    let i32 = idxBytes(typeByte: 0x0C, shape: [2, 1], data: [0xff, 0xff, 0xff, 0xfe, 0, 1, 0, 0])
    #expect(try IDX.decode(i32, name: "i32") == Tensor(shape: [2, 1], floats: [-2, 65536]))
    let f32 = idxBytes(typeByte: 0x0D, shape: [1, 1], data: [0x3f, 0xc0, 0, 0])
    #expect(try IDX.decode(f32, name: "f32") == Tensor(shape: [1, 1], floats: [1.5]))
    let f64 = idxBytes(typeByte: 0x0E, shape: [1], data: [0xc0, 0x04, 0, 0, 0, 0, 0, 0])
    #expect(
      try IDX.decode(f64, name: "f64")
        == Tensor(dtype: .float64, shape: [1], storage: .float([-2.5])))
    #expect(
      try IDX.decode(idxBytes(typeByte: 0x08, shape: [0, 28], data: []), name: "empty").shape == [
        0, 28,
      ])
  }

  @Test(arguments: ["bomb.idx1.gz", "short.idx3.gz", "badcrc.idx1.gz"])
  func refusesHostileCompressedFiles(file: String) {
    #expect(throws: LowbitError.self) { try IDX.read(contentsOf: fixture(file)) }
  }

  @Test func refusesHostilePlainFiles() {
    let cases: [[UInt8]] = [
      [], [0, 0], [1, 0, 8, 1, 0, 0, 0, 1, 5],  // bad magic
      idxBytes(typeByte: 0x07, shape: [1], data: [1]),  // unknown type
      idxBytes(typeByte: 0x08, shape: [], data: []),  // no dimensions
      idxBytes(typeByte: 0x08, shape: [3], data: [1, 2]),  // truncated
      idxBytes(typeByte: 0x08, shape: [3], data: [1, 2, 3, 4]),  // trailing data
      idxBytes(typeByte: 0x0E, shape: [.max, .max, .max], data: [1]),  // overflowing dims
      idxBytes(typeByte: 0x08, shape: [0, .max, .max], data: []),  // no items, each 2^64 bytes (trapped once)
      idxBytes(typeByte: 0x08, shape: [60000, 28, 28], data: [1, 2, 3]),  // claims 47 MB
      [0, 0, 8, 3, 0, 0],  // dimensions cut short
      [0x1f, 0x8b, 8, 0, 0, 0],  // gzip header only
      [0x1f, 0x8b] + [UInt8](repeating: 0x55, count: 64),  // gzip magic, garbage
    ]
    for bytes in cases {
      #expect(throws: LowbitError.self) { try IDX.decode(bytes, name: "hostile") }
    }
    #expect(throws: LowbitError.self) {
      try IDX.decode(idxBytes(typeByte: 8, shape: [1], data: [1]), name: "x", limit: -1)
    }
  }

  @Test(.enabled(if: IDXTests.hasFashionMNIST))
  func readsTheFashionMNISTTestSet() throws {
    let images = try IDX.read(contentsOf: Self.fashionDirectory + "/t10k-images-idx3-ubyte.gz")
    #expect(images.shape == [10000, 28, 28])
    #expect(images.dtype == .float32)
    // python3: np.frombuffer(gzip.open(...).read(), np.uint8, offset=16).mean() == 73.14656658163265
    let mean = images.floats.reduce(0.0) { $0 + Double($1) } / Double(images.count)
    #expect(abs(mean - 73.14656658163265) < 1e-9)
    #expect(images.floats[0..<784].reduce(0, +) == 33456)
    let labels = try IDX.read(contentsOf: Self.fashionDirectory + "/t10k-labels-idx1-ubyte.gz")
    #expect(labels.shape == [10000])
    #expect(Array(labels.ints.prefix(10)) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    #expect(labels.ints.reduce(0, +) == 45000)
  }
}
