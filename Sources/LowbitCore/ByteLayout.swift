/// Fixed-width integers to and from bytes in a stated byte order: the one codec behind tensor
/// raw data, NPY/IDX arrays, checkpoints and broadcast messages.
public enum ByteLayout {
  /// `values` as little-endian bytes, `MemoryLayout<T>.size` each.
  public static func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var out: [UInt8] = []
    appendLittleEndian(values, to: &out)
    return out
  }

  /// Appends `values` as little-endian bytes.
  public static func appendLittleEndian<T: FixedWidthInteger>(_ values: [T], to bytes: inout [UInt8]) {
    let le = values.map(\.littleEndian)
    le.withUnsafeBytes { bytes.append(contentsOf: $0) }
  }

  /// Appends one value as little-endian bytes.
  public static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    var v = value.littleEndian
    withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
  }

  /// The little-endian value of `T` at `offset`; the caller has checked that the bytes are there.
  public static func readLittleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type) -> T {
    load(T.self, from: bytes, offset: offset, count: 1)[0]
  }

  /// `count` values of `T` read from little- (or big-) endian elements at `offset` of `bytes`;
  /// traps when the range is outside `bytes` (callers check lengths first and throw).
  public static func load<T: FixedWidthInteger>(
    _ type: T.Type, from bytes: [UInt8], offset: Int, count: Int, bigEndian: Bool = false
  ) -> [T] {
    let size = MemoryLayout<T>.size
    precondition(offset >= 0 && count >= 0 && count <= (bytes.count - offset) / size)
    return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
      bytes.withUnsafeBytes { raw in
        // Safety: the precondition keeps the copied range inside `bytes`; `buffer` holds
        // `count` elements of `size` bytes.
        if count > 0 {
          UnsafeMutableRawBufferPointer(buffer).copyMemory(
            from: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + count * size]))
        }
      }
      for i in 0..<count {
        buffer[i] = bigEndian ? T(bigEndian: buffer[i]) : T(littleEndian: buffer[i])
      }
      initialized = count
    }
  }
}
