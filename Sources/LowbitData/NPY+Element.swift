import LowbitCore

extension NPY {
  /// An NPY element type: the kind letter and byte width of a `descr` such as `<f4`.
  struct Element {
    enum Kind { case float, signed, unsigned, bool }
    let kind: Kind
    let size: Int
    let dtype: DType

    /// The descr lowbit writes for this element type.
    var descr: String {
      let letter: String
      switch kind {
      case .float: letter = "f"
      case .signed: letter = "i"
      case .unsigned: letter = "u"
      case .bool: letter = "b"
      }
      return (size == 1 ? "|" : "<") + letter + String(size)
    }

    init(kind: Kind, size: Int, dtype: DType) {
      self.kind = kind
      self.size = size
      self.dtype = dtype
    }

    /// Parses a descr string, refusing what lowbit cannot hold.
    init(descr: String, name: String) throws {
      let chars = Array(descr)
      guard chars.count >= 2 else {
        throw LowbitError.invalidInput("\(name): malformed NPY descr '\(descr)'")
      }
      var order: Character = "="
      var rest = chars[...]
      if "<>|=".contains(chars[0]) {
        order = chars[0]
        rest = chars.dropFirst()
      }
      if rest.first == "O" {
        throw LowbitError.unsupported(
          "\(name): object arrays ('\(descr)'); lowbit reads bool, int, uint and float arrays")
      }
      guard let letter = rest.first, let size = Int(String(rest.dropFirst())) else {
        throw LowbitError.unsupported(
          "\(name): NPY dtype '\(descr)'; lowbit reads bool, int, uint and float arrays")
      }
      let table: [Character: [Int: (Kind, DType)]] = [
        "f": [2: (.float, .float16), 4: (.float, .float32), 8: (.float, .float64)],
        "i": [
          1: (.signed, .int8), 2: (.signed, .int16), 4: (.signed, .int32), 8: (.signed, .int64),
        ],
        "u": [
          1: (.unsigned, .uint8), 2: (.unsigned, .uint16), 4: (.unsigned, .uint32),
          8: (.unsigned, .uint64),
        ],
        "b": [1: (.bool, .bool)],
      ]
      guard let (kind, dtype) = table[letter]?[size] else {
        throw LowbitError.unsupported(
          "\(name): NPY dtype '\(descr)'; lowbit reads bool, int, uint and float arrays")
      }
      // '=' (native) is little-endian on every platform lowbit runs on.
      if order == ">" && size > 1 {
        throw LowbitError.unsupported(
          "\(name): big-endian NPY data ('\(descr)'); convert with arr.astype(arr.dtype.newbyteorder('<'))"
        )
      }
      self.init(kind: kind, size: size, dtype: dtype)
    }

    /// The element type lowbit writes for a tensor of `dtype`.
    static func forWriting(_ dtype: DType) -> Element {
      switch dtype {
      case .float16: return Element(kind: .float, size: 2, dtype: dtype)
      case .float32: return Element(kind: .float, size: 4, dtype: dtype)
      case .bfloat16: return Element(kind: .float, size: 4, dtype: .float32)  // NumPy has no bfloat16
      case .float64: return Element(kind: .float, size: 8, dtype: dtype)
      case .bool: return Element(kind: .bool, size: 1, dtype: dtype)
      case .int8, .int4: return Element(kind: .signed, size: 1, dtype: .int8)
      case .int16: return Element(kind: .signed, size: 2, dtype: dtype)
      case .int32: return Element(kind: .signed, size: 4, dtype: dtype)
      case .int64: return Element(kind: .signed, size: 8, dtype: dtype)
      case .uint8, .uint4: return Element(kind: .unsigned, size: 1, dtype: .uint8)
      case .uint16: return Element(kind: .unsigned, size: 2, dtype: dtype)
      case .uint32: return Element(kind: .unsigned, size: 4, dtype: dtype)
      case .uint64: return Element(kind: .unsigned, size: 8, dtype: dtype)
      }
    }
  }
}
