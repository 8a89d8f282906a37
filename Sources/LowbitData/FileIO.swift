import Foundation
import LowbitCore

/// Whole-file reading and atomic writing, with errors that name the file.
enum FileIO {
  /// The bytes of the file at `path`.
  static func read(_ path: String) throws -> [UInt8] {
    try requireFile(path)
    do {
      let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
      return [UInt8](data)
    } catch {
      throw LowbitError.io("\(path): cannot read (\(error.localizedDescription))")
    }
  }

  /// Throws `LowbitError.io` unless `path` names an existing file that is not a directory.
  static func requireFile(_ path: String) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw LowbitError.io("\(path): no such file")
    }
    guard !isDirectory.boolValue else {
      throw LowbitError.io("\(path): is a directory, not a file")
    }
  }

  /// The size of the regular file at `path`.
  static func size(_ path: String) throws -> Int {
    try requireFile(path)
    guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber else {
      throw LowbitError.io("\(path): cannot read its size")
    }
    return size.intValue
  }

  /// `count` bytes of the file at `path` from byte `offset` (fewer than `count` available: an
  /// error, the file changed since it was checked).
  static func read(_ path: String, from offset: Int, count: Int) throws -> [UInt8] {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw LowbitError.io("\(path): cannot open") }
    defer { try? handle.close() }
    do {
      try handle.seek(toOffset: UInt64(offset))
      let data = try handle.read(upToCount: count) ?? Data()
      guard data.count == count else {
        throw LowbitError.io("\(path): \(data.count) of \(count) bytes at offset \(offset): the file is shorter than when it was opened")
      }
      return [UInt8](data)
    } catch let error as LowbitError {
      throw error
    } catch {
      throw LowbitError.io("\(path): cannot read (\(error.localizedDescription))")
    }
  }

  /// Writes `bytes` to a temporary file next to `path`, then renames it into place, so that
  /// `path` holds either its old content or all of the new one, never a half-written file.
  static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(
      ".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max)).tmp"
    )
    do {
      try Data(bytes).write(to: temporary)
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      throw LowbitError.io("\(path): cannot write (\(error.localizedDescription))")
    }
    if rename(temporary.path, url.path) != 0 {
      let reason = String(cString: strerror(errno))
      try? FileManager.default.removeItem(at: temporary)
      throw LowbitError.io("\(path): cannot move the written file into place (\(reason))")
    }
  }
}

/// Bounds-checked little- and big-endian reads from a byte array; running past the end throws
/// `LowbitError.invalidInput` naming the file and what was being read.
struct ByteReader {
  let bytes: [UInt8]
  let name: String
  var offset: Int

  init(_ bytes: [UInt8], name: String, offset: Int = 0) {
    self.bytes = bytes
    self.name = name
    self.offset = offset
  }

  var remaining: Int { bytes.count - offset }

  /// Throws unless `count` bytes are available from `offset`.
  func require(_ count: Int, at offset: Int, for what: String) throws {
    guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else {
      throw LowbitError.invalidInput(
        "\(name): truncated: \(what) needs \(count) bytes at offset \(offset), file has \(bytes.count)"
      )
    }
  }

  /// An unsigned integer of `width` bytes at `offset`, little-endian unless `bigEndian`.
  func uint(at offset: Int, width: Int, bigEndian: Bool = false, _ what: String) throws -> UInt64 {
    try require(width, at: offset, for: what)
    var value: UInt64 = 0
    for i in 0..<width {
      let byte = UInt64(bytes[offset + (bigEndian ? i : width - 1 - i)])
      value = value << 8 | byte
    }
    return value
  }

  mutating func u8(_ what: String) throws -> UInt8 { UInt8(try next(1, what)) }
  mutating func u16(_ what: String) throws -> UInt16 { UInt16(try next(2, what)) }
  mutating func u32(_ what: String) throws -> UInt32 { UInt32(try next(4, what)) }
  mutating func u64(_ what: String) throws -> UInt64 { try next(8, what) }
  mutating func u32be(_ what: String) throws -> UInt32 {
    let v = try uint(at: offset, width: 4, bigEndian: true, what)
    offset += 4
    return UInt32(v)
  }

  /// The next `count` bytes.
  mutating func take(_ count: Int, _ what: String) throws -> ArraySlice<UInt8> {
    try require(count, at: offset, for: what)
    defer { offset += count }
    return bytes[offset..<offset + count]
  }

  private mutating func next(_ width: Int, _ what: String) throws -> UInt64 {
    let v = try uint(at: offset, width: width, what)
    offset += width
    return v
  }
}

/// The product of `dims`, or nil on overflow or a negative dimension.
func checkedProduct(_ dims: [Int]) -> Int? {
  var total = 1
  for d in dims {
    guard d >= 0 else { return nil }
    let (p, overflow) = total.multipliedReportingOverflow(by: d)
    if overflow { return nil }
    total = p
  }
  return total
}
