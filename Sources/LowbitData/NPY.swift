import LowbitCore

/// NumPy's `.npy` format (versions 1.0, 2.0 and 3.0), little-endian, C order.
///
/// | descr | lowbit dtype | storage |
/// | --- | --- | --- |
/// | `<f2`, `<f4`, `<f8` | float16, float32, float64 | Float (float64 rounded to Float) |
/// | `|i1`, `<i2`, `<i4`, `<i8` | int8, int16, int32, int64 | Int64 |
/// | `|u1`, `<u2`, `<u4`, `<u8` | uint8, uint16, uint32, uint64 | Int64 (uint64 above Int64.max: error) |
/// | `|b1` | bool | Bool (any nonzero byte is true) |
///
/// Big-endian data, `fortran_order: True` (rank 2 and up), object, string and structured arrays are
/// refused with a `LowbitError` that names the file.
public enum NPY {
  static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

  /// Reads the `.npy` file at `path`.
  public static func read(contentsOf path: String) throws -> Tensor {
    try decode(FileIO.read(path), name: path)
  }

  /// Writes `tensor` to `path` as a version 1.0 `.npy` file (via a temporary file and a rename).
  public static func write(_ tensor: Tensor, to path: String) throws {
    try FileIO.writeAtomically(encode(tensor), to: path)
  }

  /// Decodes the bytes of a `.npy` file; `name` (a path or an npz member) appears in errors.
  public static func decode(_ bytes: [UInt8], name: String) throws -> Tensor {
    let header = try Header.parse(bytes, name: name)
    _ = try header.dataBytes(available: bytes.count - header.dataOffset, name: name)
    return try checkedTensor(dtype: header.element.dtype, shape: header.shape, bytes: Array(bytes[header.dataOffset...]), name: name)
  }

  /// The array in the `.npy` file at `path` as a data set column whose rows are read from the
  /// file when asked for (`DataColumn.rows`); the header and the file's size are checked here.
  public static func column(path: String) throws -> DataColumn {
    let size = try FileIO.size(path)
    let preamble = try FileIO.read(path, from: 0, count: min(size, 12))
    let width = preamble.count >= 7 && preamble[6] == 1 ? 2 : 4
    var length = 0
    if preamble.count >= 8 + width {
      for i in (0..<width).reversed() { length = length << 8 | Int(preamble[8 + i]) }
    }
    let headerBytes = try FileIO.read(path, from: 0, count: min(size, 8 + width + length))
    let header = try Header.parse(headerBytes, name: path)
    let bytes = try header.dataBytes(available: size - header.dataOffset, name: path)
    guard !header.shape.isEmpty else {
      return DataColumn(try checkedTensor(dtype: header.element.dtype, shape: [], bytes: FileIO.read(path, from: header.dataOffset, count: bytes), name: path))
    }
    return DataColumn(dtype: header.element.dtype, shape: header.shape, backing: .npyFile(path: path, dataOffset: header.dataOffset))
  }

  /// A tensor over NPY's little-endian data, which is the tensor's raw layout: narrow types stay
  /// packed (a uint8 image array takes 1 byte per value in memory). uint64 computes as Int64, so
  /// a value above Int64.max is refused, naming `name`.
  static func checkedTensor(dtype: DType, shape: [Int], bytes: [UInt8], name: String) throws -> Tensor {
    guard let tensor = Tensor(dtype: dtype, shape: shape, rawBytes: bytes) else {
      throw LowbitError.invalidInput("\(name): \(bytes.count) bytes of data for \(dtype)\(shape)")
    }
    if dtype == .uint64, let bad = tensor.ints.firstIndex(where: { $0 < 0 }) {
      throw LowbitError.unsupported(
        "\(name): uint64 value \(UInt64(bitPattern: tensor.ints[bad])) at flat index \(bad) exceeds the int64 range lowbit computes in")
    }
    return tensor
  }

  /// The bytes of a `.npy` file holding `tensor`: version 1.0 (2.0 only for a header too long
  /// for 1.0), header padded with spaces to a multiple of 64 bytes and ending in a newline.
  /// Float types keep their width (`<f2`, `<f4`, `<f8`), integer types their own descr; 4-bit
  /// types are widened to `|i1` / `|u1`.
  public static func encode(_ tensor: Tensor) -> [UInt8] {
    let element = Element.forWriting(tensor.dtype)
    let shapeText: String
    switch tensor.shape.count {
    case 0: shapeText = "()"
    case 1: shapeText = "(\(tensor.shape[0]),)"
    default: shapeText = "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
    }
    var text = "{'descr': '\(element.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    let version: UInt8 = text.utf8.count + 11 <= 65535 ? 1 : 2
    let prefix = version == 1 ? 10 : 12
    let total = (prefix + text.utf8.count + 1 + 63) / 64 * 64
    text += String(repeating: " ", count: total - prefix - text.utf8.count - 1) + "\n"
    var bytes = magic + [version, 0]
    let length = text.utf8.count
    bytes +=
      version == 1
      ? [UInt8(length & 0xff), UInt8(length >> 8)]
      : (0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
    bytes += Array(text.utf8)
    // Types NumPy lacks (4-bit, bfloat16) are written widened; the others as they are held.
    bytes += element.dtype == tensor.dtype
      ? tensor.rawBytes : Tensor(dtype: element.dtype, shape: tensor.shape, storage: tensor.storage).rawBytes
    return bytes
  }

  /// What an NPY header says.
  struct Header {
    var element: Element
    var shape: [Int]
    /// Where the array data starts.
    var dataOffset: Int

    /// The bytes of data the shape needs, checked against the `available` bytes after the
    /// header: too large a shape, a truncated file or bytes left over throw, naming `name`.
    func dataBytes(available: Int, name: String) throws -> Int {
      guard let count = checkedProduct(shape),
        case (let size, false) = count.multipliedReportingOverflow(by: element.size)
      else {
        throw LowbitError.invalidInput("\(name): shape \(shape) is too large")
      }
      guard size <= available else {
        throw LowbitError.invalidInput(
          "\(name): truncated: shape \(shape) of \(element.descr) needs \(size) bytes of data, the file has \(available)")
      }
      guard size == available else {
        throw LowbitError.invalidInput("\(name): \(available - size) unexpected bytes after the \(size) bytes of data")
      }
      return size
    }

    static func parse(_ bytes: [UInt8], name: String) throws -> Header {
      let reader = ByteReader(bytes, name: name)
      try reader.require(10, at: 0, for: "the NPY preamble")
      guard Array(bytes[0..<6]) == NPY.magic else {
        throw LowbitError.invalidInput("\(name): not an NPY file (no \\x93NUMPY magic)")
      }
      let (major, minor) = (bytes[6], bytes[7])
      guard (1...3).contains(major) && minor == 0 else {
        throw LowbitError.unsupported(
          "\(name): NPY format version \(major).\(minor) (lowbit reads 1.0, 2.0, 3.0)")
      }
      let width = major == 1 ? 2 : 4
      let length = Int(try reader.uint(at: 8, width: width, "the NPY header length"))
      let start = 8 + width
      try reader.require(length, at: start, for: "the NPY header")
      let raw = bytes[start..<start + length]
      let text: String
      if major == 3 {
        guard let utf8 = String(validating: raw, as: UTF8.self) else {
          throw LowbitError.invalidInput("\(name): NPY 3.0 header is not valid UTF-8")
        }
        text = utf8
      } else {
        text = String(String.UnicodeScalarView(raw.map { Unicode.Scalar($0) }))  // Latin-1
      }
      let literal = try PythonLiteral.parse(text, name: name)
      guard case .dict = literal else {
        throw LowbitError.invalidInput("\(name): NPY header is not a dict")
      }
      guard let descr = literal["descr"], let fortran = literal["fortran_order"],
        let shapeValue = literal["shape"]
      else {
        throw LowbitError.invalidInput(
          "\(name): NPY header lacks 'descr', 'fortran_order' or 'shape'")
      }
      guard case .tuple(let dims) = shapeValue else {
        throw LowbitError.invalidInput("\(name): NPY 'shape' is not a tuple")
      }
      let shape = try dims.map { dim -> Int in
        guard case .int(let d) = dim, d >= 0 else {
          throw LowbitError.invalidInput(
            "\(name): NPY 'shape' \(dims) holds a value that is not a non-negative integer")
        }
        return d
      }
      guard case .bool(let isFortran) = fortran else {
        throw LowbitError.invalidInput("\(name): NPY 'fortran_order' is not True or False")
      }
      if isFortran && shape.filter({ $0 > 1 }).count > 1 {
        throw LowbitError.unsupported(
          "\(name): Fortran-order array; save it in C order (np.ascontiguousarray) first")
      }
      guard case .string(let descrText) = descr else {
        throw LowbitError.unsupported(
          "\(name): structured NPY dtype \(descr); lowbit reads plain numeric arrays")
      }
      return Header(
        element: try Element(descr: descrText, name: name), shape: shape, dataOffset: start + length
      )
    }
  }
}
