import LowbitCore

/// NumPy's `.npz` format: a zip archive of `.npy` members, as `np.savez` (stored) and
/// `np.savez_compressed` (deflated) write it, ZIP64 fields included.
public enum NPZ {
  /// Reads the `.npz` file at `path`: its members as (name without `.npy`, tensor), in archive
  /// order.
  public static func read(contentsOf path: String) throws -> [(String, Tensor)] {
    try decode(FileIO.read(path), name: path)
  }

  /// Writes `members` to `path` as an uncompressed `.npz` (via a temporary file and a rename).
  /// Each member is stored as `name.npy`; names must be unique and non-empty; the archive must
  /// stay under 4 GiB.
  public static func write(_ members: [(String, Tensor)], to path: String) throws {
    try FileIO.writeAtomically(encode(members, name: path), to: path)
  }

  /// Decodes the bytes of an `.npz` file; `name` appears in errors. Every CRC-32 is checked and
  /// every member must be a `.npy` file.
  public static func decode(_ bytes: [UInt8], name: String) throws -> [(String, Tensor)] {
    var result: [(String, Tensor)] = []
    var seen: Set<String> = []
    for entry in try Zip.entries(bytes, name: name) {
      guard entry.name.hasSuffix(".npy") else {
        throw LowbitError.invalidInput("\(name): member '\(entry.name)' is not a .npy file")
      }
      let key = String(entry.name.dropLast(4))
      guard seen.insert(key).inserted else {
        throw LowbitError.invalidInput("\(name): member '\(entry.name)' appears twice")
      }
      let data = try Zip.contents(of: entry, in: bytes, name: name)
      result.append((key, try NPY.decode(data, name: "\(name) member '\(entry.name)'")))
    }
    return result
  }

  /// The bytes of an uncompressed `.npz` holding `members`; `name` appears in errors.
  public static func encode(_ members: [(String, Tensor)], name: String = "npz") throws -> [UInt8] {
    var seen: Set<String> = []
    for (key, _) in members {
      guard !key.isEmpty else { throw LowbitError.invalidArgument("\(name): empty member name") }
      guard seen.insert(key).inserted else {
        throw LowbitError.invalidArgument("\(name): member name '\(key)' given twice")
      }
    }
    return try Zip.archive(members.map { ($0.0 + ".npy", NPY.encode($0.1)) }, archiveName: name)
  }
}
