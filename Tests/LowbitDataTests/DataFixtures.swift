import Foundation
import LowbitCore

/// The fixture folder beside this file (written by Fixtures/make_fixtures.py).
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .appendingPathComponent("Fixtures")

func fixture(_ name: String) -> String { fixturesDirectory.appendingPathComponent(name).path }

func fixtureBytes(_ name: String) throws -> [UInt8] {
  [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture(name))))
}

/// A fresh empty directory under the system's temporary directory.
func makeTemporaryDirectory() throws -> URL {
  let url = FileManager.default.temporaryDirectory
    .appendingPathComponent("lowbit-data-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

/// The arrays of make_fixtures.py's ARRAYS, as lowbit reads them (float64 rounded to Float).
let expectedArrays: [(code: String, tensor: Tensor)] = [
  (
    "f2",
    Tensor(
      dtype: .float16, shape: [2, 3], storage: .float([0, 1.5, -2.25, 65504, 0x1p-24, .infinity]))
  ),
  ("f4", Tensor(shape: [2, 3], floats: [0.5, -1, 3.25, 1e10, 0x1p-149, -.infinity])),
  (
    "f8",
    Tensor(
      dtype: .float64, shape: [2, 3],
      storage: .float([Float(0.1 as Double), 2.5, -3, .infinity, 0, Float(123456.789 as Double)]))
  ),
  ("i1", Tensor(dtype: .int8, shape: [2, 3], storage: .int([-128, -1, 0, 1, 2, 127]))),
  ("i2", Tensor(dtype: .int16, shape: [2, 3], storage: .int([-32768, -1, 0, 1, 300, 32767]))),
  (
    "i4",
    Tensor(
      dtype: .int32, shape: [2, 3],
      storage: .int([Int64(Int32.min), -1, 0, 1, 70000, Int64(Int32.max)]))
  ),
  ("i8", Tensor(dtype: .int64, shape: [2, 3], storage: .int([.min, -1, 0, 1, 1 << 40, .max]))),
  ("u1", Tensor(dtype: .uint8, shape: [2, 3], storage: .int([0, 1, 2, 128, 200, 255]))),
  ("u2", Tensor(dtype: .uint16, shape: [2, 3], storage: .int([0, 1, 2, 300, 40000, 65535]))),
  (
    "u4",
    Tensor(
      dtype: .uint32, shape: [2, 3], storage: .int([0, 1, 2, 70000, 3_000_000_000, 4_294_967_295]))
  ),
  ("u8", Tensor(dtype: .uint64, shape: [2, 3], storage: .int([0, 1, 2, 1 << 40, 1 << 62, .max]))),
  ("b1", Tensor(shape: [2, 3], bools: [true, false, true, true, false, false])),
]

/// The NPY v1.0 bytes of `header` (padded as numpy does) followed by `data`.
func npyBytes(header: String, data: [UInt8], version: UInt8 = 1) -> [UInt8] {
  let prefix = version == 1 ? 10 : 12
  var text = header
  while (prefix + text.utf8.count + 1) % 64 != 0 { text += " " }
  text += "\n"
  let n = text.utf8.count
  let length: [UInt8] =
    version == 1
    ? [UInt8(n & 0xff), UInt8(n >> 8)] : [UInt8(n & 0xff), UInt8(n >> 8), 0, 0]
  return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + Array(text.utf8) + data
}

/// Little-endian bytes of float32 values.
func float32Bytes(_ values: [Float]) -> [UInt8] {
  values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * $0)) } }
}
