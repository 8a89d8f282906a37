import Foundation
import LowbitCore
import Testing

@testable import LowbitData

@Suite struct NPZTests {
  @Test(arguments: ["dtypes.npz", "dtypes_compressed.npz"])
  func readsNumpyArchives(file: String) throws {
    let members = try NPZ.read(contentsOf: fixture(file))
    #expect(members.map(\.0) == expectedArrays.map(\.code))
    for ((_, tensor), expected) in zip(members, expectedArrays) {
      #expect(tensor == expected.tensor, "\(expected.code)")
    }
  }

  @Test func readsZip64CentralDirectory() throws {
    let members = try NPZ.read(contentsOf: fixture("zip64.npz"))
    #expect(members.map(\.0) == ["x", "labels"])
    #expect(members[0].1 == expectedArrays[1].tensor)
    #expect(members[1].1 == Tensor(shape: [2], ints: [3, 1]))
  }

  @Test func roundTripsEveryDTypeInOrder() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("all.npz").path
    let members =
      expectedArrays.reversed().map { ($0.code, $0.tensor) } + [("naïve/ü", Tensor(scalar: 1))]
    try NPZ.write(members, to: path)
    let back = try NPZ.read(contentsOf: path)
    #expect(back.map(\.0) == members.map(\.0))
    #expect(back.map(\.1) == members.map(\.1))
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["all.npz"])
  }

  @Test func writesAnEmptyArchive() throws {
    #expect(try NPZ.decode(NPZ.encode([]), name: "empty").isEmpty)
  }

  @Test func refusesBadMemberNamesOnWrite() {
    let t = Tensor(scalar: 0)
    #expect(throws: LowbitError.self) { try NPZ.encode([("a", t), ("a", t)]) }
    #expect(throws: LowbitError.self) { try NPZ.encode([("", t)]) }
  }

  @Test func detectsAWrongCRC() throws {
    var bytes = try NPZ.encode([("x", Tensor(shape: [4], floats: [1, 2, 3, 4]))])
    // Local header (30) + "x.npy" (5) + NPY header (128) = first data byte.
    bytes[30 + 5 + 128] ^= 0x01
    #expect(throws: LowbitError.self) { try NPZ.decode(bytes, name: "crc") }
  }

  @Test func detectsCorruptDeflateData() throws {
    let good = try fixtureBytes("dtypes_compressed.npz")
    var failures = 0
    for offset in stride(from: 60, to: 600, by: 37) {
      var bytes = good
      bytes[offset] ^= 0x5a
      do { _ = try NPZ.decode(bytes, name: "flipped") } catch is LowbitError { failures += 1 }
    }
    #expect(failures > 0)
  }

  @Test func refusesGarbage() throws {
    let good = try NPZ.encode([("x", Tensor(shape: [3], floats: [1, 2, 3]))])
    var generator = SeededGeneratorForTests(seed: 3)
    let noise = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let cases: [[UInt8]] = [
      [], Array("PK".utf8), noise, Array("PK\u{5}\u{6}".utf8) + [UInt8](repeating: 0xff, count: 18),
      Array(good.dropLast(5)),  // end record cut
      Array(good.dropFirst(10)),  // offsets point at the wrong places
      Array(good.prefix(40)) + Array(good.suffix(60)),
    ]
    for bytes in cases {
      #expect(throws: LowbitError.self) { try NPZ.decode(bytes, name: "garbage") }
    }
    // Random damage anywhere must end in an error or a valid result, never a crash.
    for _ in 0..<300 {
      var bytes = good
      bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
        in: 0...255, using: &generator)
      _ = try? NPZ.decode(bytes, name: "damaged")
    }
  }

  @Test func refusesLyingSizes() throws {
    // Claim a huge uncompressed size in the central directory of a compressed member.
    var bytes = try fixtureBytes("dtypes_compressed.npz")
    let entries = try Zip.entries(bytes, name: "t")
    let end = bytes.count - 22
    let directory = Int(bytes[end + 16]) | Int(bytes[end + 17]) << 8 | Int(bytes[end + 18]) << 16
    #expect(entries[0].method == 8)
    for i in 0..<4 { bytes[directory + 24 + i] = [0x00, 0x00, 0x00, 0x7f][i] }
    #expect(throws: LowbitError.self) { try NPZ.decode(bytes, name: "lying") }
  }

  @Test func refusesMembersThatAreNotNPY() throws {
    let bytes = try Zip.archive([(name: "readme.txt", data: Array("hello".utf8))], archiveName: "t")
    #expect(throws: LowbitError.self) { try NPZ.decode(bytes, name: "txt") }
    #expect(
      try Zip.contents(of: Zip.entries(bytes, name: "t")[0], in: bytes, name: "t")
        == Array("hello".utf8))
  }
}
