import LowbitCore

/// The zip archive subset NPZ files use: one disk, members stored or deflated, ZIP64 extensions
/// read (numpy writes them), no encryption.
enum Zip {
  /// One member as the central directory describes it.
  struct Entry {
    var name: String
    var flags: UInt16
    var method: UInt16
    var crc: UInt32
    var compressedSize: Int
    var uncompressedSize: Int
    var localHeaderOffset: Int
  }

  static let endSignature: UInt64 = 0x0605_4b50
  static let zip64EndSignature: UInt64 = 0x0606_4b50
  static let zip64LocatorSignature: UInt64 = 0x0706_4b50
  static let centralSignature: UInt64 = 0x0201_4b50
  static let localSignature: UInt64 = 0x0403_4b50

  /// The members of the archive `bytes`, in central-directory order.
  static func entries(_ bytes: [UInt8], name: String) throws -> [Entry] {
    let reader = ByteReader(bytes, name: name)
    // The end-of-central-directory record: 22 bytes plus a comment of up to 65535.
    var end: Int?
    var candidate = bytes.count - 22
    while candidate >= max(0, bytes.count - 22 - 65535) {
      if try reader.uint(at: candidate, width: 4, "") == endSignature,
        try candidate + 22 + Int(reader.uint(at: candidate + 20, width: 2, "")) == bytes.count
      {
        end = candidate
        break
      }
      candidate -= 1
    }
    guard let end else {
      throw LowbitError.invalidInput(
        "\(name): not a zip archive (no end-of-central-directory record)")
    }
    let disk = try reader.uint(at: end + 4, width: 2, "the zip disk number")
    var count = Int(try reader.uint(at: end + 10, width: 2, "the zip entry count"))
    var directorySize = Int(try reader.uint(at: end + 12, width: 4, "the central directory size"))
    var directoryOffset = Int(
      try reader.uint(at: end + 16, width: 4, "the central directory offset"))
    guard disk == 0 else { throw LowbitError.unsupported("\(name): multi-disk zip archive") }

    // ZIP64: a locator right before the end record points at the 64-bit end record.
    if end >= 20, try reader.uint(at: end - 20, width: 4, "") == zip64LocatorSignature {
      let at = try reader.uint(at: end - 12, width: 8, "the ZIP64 end record offset")
      guard let r = Int(exactly: at), r <= end - 20 - 56,
        try reader.uint(at: r, width: 4, "") == zip64EndSignature
      else {
        throw LowbitError.invalidInput("\(name): broken ZIP64 end-of-central-directory locator")
      }
      count = try sizeField(reader.uint(at: r + 32, width: 8, "the ZIP64 entry count"), name)
      directorySize = try sizeField(
        reader.uint(at: r + 40, width: 8, "the ZIP64 directory size"), name)
      directoryOffset = try sizeField(
        reader.uint(at: r + 48, width: 8, "the ZIP64 directory offset"), name)
    }
    guard directoryOffset <= end, directorySize <= end - directoryOffset,
      count <= directorySize / 46
    else {
      throw LowbitError.invalidInput(
        "\(name): zip central directory (\(count) entries, \(directorySize) bytes at \(directoryOffset)) does not fit the file"
      )
    }

    var entries: [Entry] = []
    var r = ByteReader(bytes, name: name, offset: directoryOffset)
    for index in 0..<count {
      let what = "zip central directory entry \(index)"
      guard try r.u32(what) == centralSignature else {
        throw LowbitError.invalidInput("\(name): \(what) has a bad signature")
      }
      _ = try r.take(4, what)  // versions made by / needed
      let flags = try r.u16(what)
      let method = try r.u16(what)
      _ = try r.take(4, what)  // time, date
      let crc = try r.u32(what)
      var compressed = UInt64(try r.u32(what))
      var uncompressed = UInt64(try r.u32(what))
      let nameLength = Int(try r.u16(what))
      let extraLength = Int(try r.u16(what))
      let commentLength = Int(try r.u16(what))
      let startDisk = try r.u16(what)
      _ = try r.take(6, what)  // attributes
      var offset = UInt64(try r.u32(what))
      let nameBytes = try r.take(nameLength, what)
      let extra = try r.take(extraLength, what)
      _ = try r.take(commentLength, what)
      let memberName = String(decoding: nameBytes, as: UTF8.self)
      guard startDisk == 0 || startDisk == 0xffff else {
        throw LowbitError.unsupported("\(name): member '\(memberName)' lies on another disk")
      }
      // ZIP64 extra field (id 1): 8-byte values for exactly the fields saturated above, in order.
      if uncompressed == 0xffff_ffff || compressed == 0xffff_ffff || offset == 0xffff_ffff {
        var x = ByteReader(Array(extra), name: name)
        var found = false
        while x.remaining >= 4 {
          let id = try x.u16(what)
          let size = Int(try x.u16(what))
          guard id == 1 else {
            _ = try x.take(size, what)
            continue
          }
          var z = ByteReader(Array(try x.take(size, what)), name: name)
          let z64 = "the ZIP64 extra field of '\(memberName)'"
          if uncompressed == 0xffff_ffff { uncompressed = try z.u64(z64) }
          if compressed == 0xffff_ffff { compressed = try z.u64(z64) }
          if offset == 0xffff_ffff { offset = try z.u64(z64) }
          found = true
          break
        }
        guard found else {
          throw LowbitError.invalidInput(
            "\(name): member '\(memberName)' needs a ZIP64 extra field and has none")
        }
      }
      entries.append(
        Entry(
          name: memberName, flags: flags, method: method, crc: crc,
          compressedSize: try sizeField(compressed, name),
          uncompressedSize: try sizeField(uncompressed, name),
          localHeaderOffset: try sizeField(offset, name)))
    }
    return entries
  }

  /// The uncompressed content of `entry`, its CRC-32 checked.
  static func contents(of entry: Entry, in bytes: [UInt8], name: String) throws -> [UInt8] {
    let member = "\(name): member '\(entry.name)'"
    let reader = ByteReader(bytes, name: name)
    let at = entry.localHeaderOffset
    guard try at <= bytes.count - 30 && reader.uint(at: at, width: 4, "") == localSignature else {
      throw LowbitError.invalidInput("\(member) has no local header at offset \(at)")
    }
    let start =
      try at + 30 + Int(reader.uint(at: at + 26, width: 2, ""))
      + Int(reader.uint(at: at + 28, width: 2, ""))
    guard start <= bytes.count, entry.compressedSize <= bytes.count - start else {
      throw LowbitError.invalidInput(
        "\(member): truncated (\(entry.compressedSize) bytes declared past the end of the file)")
    }
    guard entry.flags & 1 == 0 else { throw LowbitError.unsupported("\(member) is encrypted") }
    let raw = bytes[start..<start + entry.compressedSize]
    let data: [UInt8]
    switch entry.method {
    case 0:
      guard entry.compressedSize == entry.uncompressedSize else {
        throw LowbitError.invalidInput("\(member) is stored but its two sizes differ")
      }
      data = Array(raw)
    case 8:
      // Deflate expands by at most about 1032:1; a larger claim is a lie.
      guard entry.uncompressedSize <= inflateLimit,
        entry.uncompressedSize / 1032 <= entry.compressedSize + 1
      else {
        throw LowbitError.invalidInput(
          "\(member) claims \(entry.uncompressedSize) bytes from \(entry.compressedSize) compressed (limit \(inflateLimit >> 30) GiB)"
        )
      }
      let stream = try InflateStream(raw, windowBits: -15, name: "\(name) member '\(entry.name)'")
      data = try stream.read(entry.uncompressedSize)
      let extra = data.count == entry.uncompressedSize ? try stream.read(1) : []
      guard data.count == entry.uncompressedSize, extra.isEmpty else {
        throw LowbitError.invalidInput(
          "\(member) inflates to \(extra.isEmpty ? "\(data.count)" : "more than \(data.count)") bytes, not the \(entry.uncompressedSize) declared"
        )
      }
    default:
      throw LowbitError.unsupported(
        "\(member) uses compression method \(entry.method); lowbit reads stored (0) and deflate (8)"
      )
    }
    let crc = crc32Checksum(data)
    guard crc == entry.crc else {
      throw LowbitError.invalidInput(
        "\(member) fails its CRC-32 check (computed \(hex(crc)), archive says \(hex(entry.crc)))")
    }
    return data
  }

  /// A zip archive of stored members; throws past the 4 GiB / 65535-member limits of a zip
  /// without ZIP64.
  static func archive(_ members: [(name: String, data: [UInt8])], archiveName: String) throws
    -> [UInt8]
  {
    guard members.count < 0xffff else {
      throw LowbitError.invalidArgument(
        "\(archiveName): \(members.count) members, more than a zip without ZIP64 holds")
    }
    var out: [UInt8] = []
    var central: [UInt8] = []
    for member in members {
      let name = Array(member.name.utf8)
      let flags: UInt16 = name.allSatisfy { $0 < 0x80 } ? 0 : 0x800  // bit 11: UTF-8 name
      let offset = out.count
      guard name.count < 0xffff, member.data.count < 0xffff_ffff,
        offset + 30 + name.count + member.data.count < 0xffff_ffff
      else {
        throw LowbitError.invalidArgument(
          "\(archiveName): larger than 4 GiB; lowbit writes zip archives without ZIP64 (write separate .npy files)"
        )
      }
      let crc = crc32Checksum(member.data)
      // version needed 2.0, flags, method 0 (stored), time 00:00, date 1980-01-01.
      let common: [UInt64] = [20, UInt64(flags), 0, 0, 0x21]
      var local: [UInt8] = []
      put(localSignature, 4, &local)
      for v in common { put(v, 2, &local) }
      put(UInt64(crc), 4, &local)
      put(UInt64(member.data.count), 4, &local)
      put(UInt64(member.data.count), 4, &local)
      put(UInt64(name.count), 2, &local)
      put(0, 2, &local)
      out += local + name + member.data

      put(centralSignature, 4, &central)
      put(0x0314, 2, &central)  // made by: Unix, zip 2.0
      central += local[4...]  // the same fields, from version needed to extra length
      put(0, 2, &central)  // comment length
      put(0, 2, &central)  // disk
      put(0, 2, &central)  // internal attributes
      put(0o100644 << 16, 4, &central)  // external attributes: a regular file, rw-r--r--
      put(UInt64(offset), 4, &central)
      central += name
    }
    let directoryOffset = out.count
    guard directoryOffset + central.count + 22 < 0xffff_ffff else {
      throw LowbitError.invalidArgument(
        "\(archiveName): larger than 4 GiB; lowbit writes zip archives without ZIP64")
    }
    out += central
    put(endSignature, 4, &out)
    for v: UInt64 in [0, 0, UInt64(members.count), UInt64(members.count)] { put(v, 2, &out) }
    put(UInt64(central.count), 4, &out)
    put(UInt64(directoryOffset), 4, &out)
    put(0, 2, &out)  // comment length
    return out
  }

  private static func put(_ value: UInt64, _ width: Int, _ bytes: inout [UInt8]) {
    for i in 0..<width { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
  }

  private static func sizeField(_ value: UInt64, _ name: String) throws -> Int {
    guard value <= UInt64(Int.max >> 1) else {
      throw LowbitError.invalidInput("\(name): zip size or offset \(value) out of range")
    }
    return Int(value)
  }

  private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}
