import LowbitCore

/// The IDX format of MNIST and Fashion-MNIST, plain or gzip-compressed (recognised by the gzip
/// magic bytes, not the file name).
///
/// Layout: two zero bytes, a type byte, the number of dimensions, each dimension as a big-endian
/// uint32, then the big-endian elements in row-major order.
///
/// | type byte | element | rank 1 (labels) | rank 2 and up (samples) |
/// | --- | --- | --- | --- |
/// | 0x08 | uint8 | int64 | float32 (raw values, 0...255) |
/// | 0x09 | int8 | int64 | float32 |
/// | 0x0B | int16 | int64 | float32 |
/// | 0x0C | int32 | int64 | float32 (exact up to 2^24) |
/// | 0x0D | float32 | float32 | float32 |
/// | 0x0E | float64 | float64 (held as Float) | float64 (held as Float) |
public enum IDX {
  /// Reads the IDX file at `path`, or only its first `limit` items along the first dimension
  /// (a compressed file is then inflated only that far).
  public static func read(contentsOf path: String, limit: Int? = nil) throws -> Tensor {
    try decode(FileIO.read(path), name: path, limit: limit)
  }

  /// Decodes IDX bytes, plain or gzip-compressed; `name` appears in errors.
  public static func decode(_ bytes: [UInt8], name: String, limit: Int? = nil) throws -> Tensor {
    if let limit, limit < 0 {
      throw LowbitError.invalidArgument("\(name): cannot read \(limit) items")
    }
    if bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
      return try decodeCompressed(bytes, name: name, limit: limit)
    }
    let header = try Header.parse(prefix: bytes, name: name)
    let expected = header.offset + header.itemCount * header.itemBytes
    guard bytes.count >= expected else {
      throw LowbitError.invalidInput(
        "\(name): truncated: header declares shape \(header.shape) (\(expected) bytes), the file has \(bytes.count)"
      )
    }
    guard bytes.count == expected else {
      throw LowbitError.invalidInput(
        "\(name): \(bytes.count - expected) unexpected bytes after the data of shape \(header.shape)"
      )
    }
    let items = min(header.itemCount, limit ?? header.itemCount)
    return header.tensor(from: bytes, offset: header.offset, items: items)
  }

  private static func decodeCompressed(_ bytes: [UInt8], name: String, limit: Int?) throws -> Tensor
  {
    let stream = try InflateStream(bytes, windowBits: 15 + 32, name: name)
    var prefix = try stream.read(4)
    if prefix.count == 4 { prefix += try stream.read(4 * Int(prefix[3])) }
    let header = try Header.parse(prefix: prefix, name: name)
    let items = min(header.itemCount, limit ?? header.itemCount)
    let payload = items * header.itemBytes
    guard payload <= inflateLimit else {
      throw LowbitError.invalidInput(
        "\(name): \(payload) bytes of data declared, more than the \(inflateLimit >> 30) GiB lowbit inflates"
      )
    }
    let data = try stream.read(payload)
    guard data.count == payload else {
      throw LowbitError.invalidInput(
        "\(name): truncated: header declares shape \(header.shape), the compressed data ends after \(data.count) of \(payload) bytes"
      )
    }
    let extra = items == header.itemCount ? try stream.read(1) : []
    if !extra.isEmpty {
      throw LowbitError.invalidInput(
        "\(name): more data than the header's shape \(header.shape) declares")
    }
    return header.tensor(from: data, offset: 0, items: items)
  }

  /// What an IDX header says.
  struct Header {
    var typeByte: UInt8
    var width: Int
    var shape: [Int]
    /// Bytes of the header.
    var offset: Int
    var itemCount: Int { shape[0] }
    /// Bytes of one item (the dimensions after the first).
    var itemBytes: Int

    /// Parses the header at the start of `bytes`; the product of the dimensions and that of one
    /// item's are checked against overflow and against 2^40 bytes, so that later arithmetic
    /// stays in range.
    static func parse(prefix bytes: [UInt8], name: String) throws -> Header {
      let reader = ByteReader(bytes, name: name)
      try reader.require(4, at: 0, for: "the IDX magic number")
      guard bytes[0] == 0 && bytes[1] == 0 else {
        throw LowbitError.invalidInput(
          "\(name): not an IDX file (magic number does not start with two zero bytes)")
      }
      let widths: [UInt8: Int] = [0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8]
      guard let width = widths[bytes[2]] else {
        throw LowbitError.invalidInput(
          "\(name): unknown IDX element type 0x\(String(bytes[2], radix: 16))")
      }
      let rank = Int(bytes[3])
      guard rank >= 1 else {
        throw LowbitError.invalidInput("\(name): IDX file with no dimensions")
      }
      let shape = try (0..<rank).map {
        Int(try reader.uint(at: 4 + 4 * $0, width: 4, bigEndian: true, "IDX dimension \($0)"))
      }
      // Both the whole and one item are checked: a first dimension of 0 makes the whole 0
      // whatever the others are.
      guard let total = checkedProduct(shape), total <= (1 << 40) / width,
            let itemBytes = checkedProduct([width] + shape.dropFirst()), itemBytes <= 1 << 40
      else {
        throw LowbitError.invalidInput("\(name): IDX shape \(shape) is too large")
      }
      return Header(
        typeByte: bytes[2], width: width, shape: shape, offset: 4 + 4 * rank, itemBytes: itemBytes)
    }

    /// The first `items` items from `offset` of `bytes` (the caller checked they are there).
    func tensor(from bytes: [UInt8], offset: Int, items: Int) -> Tensor {
      let count = items * itemBytes / width
      let shape = [items] + self.shape.dropFirst()
      let values: [Float]
      switch typeByte {
      case 0x0D:
        values = ByteLayout.load(
          UInt32.self, from: bytes, offset: offset, count: count, bigEndian: true
        )
        .map(Float.init(bitPattern:))
        return Tensor(shape: shape, floats: values)
      case 0x0E:
        values = ByteLayout.load(
          UInt64.self, from: bytes, offset: offset, count: count, bigEndian: true
        )
        .map { Float(Double(bitPattern: $0)) }
        return Tensor(dtype: .float64, shape: shape, storage: .float(values))
      case 0x08 where shape.count > 1:
        return Tensor(shape: shape, floats: bytes[offset..<offset + count].map(Float.init))
      default:
        let ints: [Int64]
        switch typeByte {
        case 0x08: ints = bytes[offset..<offset + count].map(Int64.init)
        case 0x09: ints = bytes[offset..<offset + count].map { Int64(Int8(bitPattern: $0)) }
        case 0x0B:
          ints = ByteLayout.load(
            Int16.self, from: bytes, offset: offset, count: count, bigEndian: true
          ).map(Int64.init)
        default:
          ints = ByteLayout.load(
            Int32.self, from: bytes, offset: offset, count: count, bigEndian: true
          ).map(Int64.init)
        }
        if shape.count == 1 { return Tensor(shape: shape, ints: ints) }
        return Tensor(shape: shape, floats: ints.map(Float.init))
      }
    }
  }
}
