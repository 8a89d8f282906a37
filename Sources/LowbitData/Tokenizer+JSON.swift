import LowbitCore

// A strict JSON reader for tokenizer.json.
//
// Foundation's JSONSerialization hands objects back as `[String: Any]`, and Swift `String` keys
// compare by canonical equivalence: a vocabulary holding both "é" (U+00E9) and "e\u{301}" would
// silently lose one entry. This reader keeps object members in file order with their keys exactly
// as written, and reports errors with the file name and byte offset.

/// One parsed JSON value; objects keep their members in file order.
enum TokenizerJSON {
  case null
  case bool(Bool)
  case int(Int)
  case double(Double)
  case string(String)
  case array([TokenizerJSON])
  case object([(key: String, value: TokenizerJSON)])

  /// The JSON type name used in error messages.
  var typeName: String {
    switch self {
    case .null: return "null"
    case .bool: return "boolean"
    case .int, .double: return "number"
    case .string: return "string"
    case .array: return "array"
    case .object: return "object"
    }
  }

  /// Parses a whole JSON document (RFC 8259; nesting limited to 512 levels).
  static func parse(_ bytes: [UInt8], name: String) throws -> TokenizerJSON {
    var parser = TokenizerJSONParser(bytes: bytes, name: name)
    return try parser.document()
  }
}

/// A recursive-descent JSON parser over UTF-8 bytes that never traps on bad input.
struct TokenizerJSONParser {
  let bytes: [UInt8]
  let name: String
  var pos = 0
  static let maxDepth = 512

  init(bytes: [UInt8], name: String) {
    self.bytes = bytes
    self.name = name
  }

  func fail(_ message: String) -> LowbitError {
    .invalidInput("\(name): malformed JSON at byte \(pos): \(message)")
  }

  mutating func document() throws -> TokenizerJSON {
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { pos = 3 }  // UTF-8 byte order mark
    skipSpace()
    let result = try value(depth: 0)
    skipSpace()
    guard pos == bytes.count else { throw fail("unexpected content after the top-level value") }
    return result
  }

  mutating func skipSpace() {
    while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
      pos += 1
    }
  }

  mutating func value(depth: Int) throws -> TokenizerJSON {
    guard depth < Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
    guard pos < bytes.count else { throw fail("unexpected end of input") }
    switch bytes[pos] {
    case UInt8(ascii: "{"): return try object(depth: depth)
    case UInt8(ascii: "["): return try array(depth: depth)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
    default: throw fail("unexpected character '\(Unicode.Scalar(bytes[pos]))'")
    }
  }

  mutating func literal(_ word: String) throws {
    let expected = Array(word.utf8)
    guard bytes.count - pos >= expected.count, Array(bytes[pos..<pos + expected.count]) == expected else {
      throw fail("expected '\(word)'")
    }
    pos += expected.count
  }

  mutating func object(depth: Int) throws -> TokenizerJSON {
    pos += 1
    var members: [(key: String, value: TokenizerJSON)] = []
    skipSpace()
    if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
    while true {
      skipSpace()
      guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
      let key = try string()
      skipSpace()
      guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
      pos += 1
      skipSpace()
      members.append((key, try value(depth: depth + 1)))
      skipSpace()
      guard pos < bytes.count else { throw fail("unterminated object") }
      if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
      if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
      throw fail("expected ',' or '}'")
    }
  }

  mutating func array(depth: Int) throws -> TokenizerJSON {
    pos += 1
    var items: [TokenizerJSON] = []
    skipSpace()
    if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
    while true {
      skipSpace()
      items.append(try value(depth: depth + 1))
      skipSpace()
      guard pos < bytes.count else { throw fail("unterminated array") }
      if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
      if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
      throw fail("expected ',' or ']'")
    }
  }

  mutating func string() throws -> String {
    pos += 1  // opening quote
    var out: [UInt8] = []
    while true {
      guard pos < bytes.count else { throw fail("unterminated string") }
      let byte = bytes[pos]
      if byte == UInt8(ascii: "\"") {
        pos += 1
        guard let text = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return text
      }
      if byte < 0x20 { throw fail("control character inside a string") }
      if byte != UInt8(ascii: "\\") { out.append(byte); pos += 1; continue }
      pos += 1
      guard pos < bytes.count else { throw fail("unterminated escape") }
      let escape = bytes[pos]
      pos += 1
      switch escape {
      case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
      case UInt8(ascii: "b"): out.append(0x08)
      case UInt8(ascii: "f"): out.append(0x0C)
      case UInt8(ascii: "n"): out.append(0x0A)
      case UInt8(ascii: "r"): out.append(0x0D)
      case UInt8(ascii: "t"): out.append(0x09)
      case UInt8(ascii: "u"):
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
          guard bytes.count - pos >= 2, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
            throw fail("lone high surrogate in \\u escape")
          }
          pos += 2
          let low = try hex4()
          guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(code) else { throw fail("lone low surrogate in \\u escape") }
        UTF8.encode(scalar) { out.append($0) }
      default: throw fail("invalid escape '\\\(Unicode.Scalar(escape))'")
      }
    }
  }

  mutating func hex4() throws -> UInt32 {
    guard bytes.count - pos >= 4 else { throw fail("truncated \\u escape") }
    var code: UInt32 = 0
    for byte in bytes[pos..<pos + 4] {
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw fail("invalid hex digit in \\u escape")
      }
      code = code << 4 | UInt32(digit)
    }
    pos += 4
    return code
  }

  mutating func number() throws -> TokenizerJSON {
    let start = pos
    func digits() -> Int {
      let first = pos
      while pos < bytes.count, bytes[pos] >= UInt8(ascii: "0"), bytes[pos] <= UInt8(ascii: "9") { pos += 1 }
      return pos - first
    }
    if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
    let intDigits = digits()
    guard intDigits > 0 else { throw fail("invalid number") }
    var integral = true
    if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
      pos += 1
      integral = false
      guard digits() > 0 else { throw fail("invalid number fraction") }
    }
    if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
      pos += 1
      integral = false
      if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
      guard digits() > 0 else { throw fail("invalid number exponent") }
    }
    let text = String(decoding: bytes[start..<pos], as: UTF8.self)
    if integral, let value = Int(text) { return .int(value) }
    guard let value = Double(text) else { throw fail("invalid number '\(text)'") }
    return .double(value)
  }
}

/// A JSON value with the path that reached it (`model.vocab`, `added_tokens[3].id`), so that every
/// type or content error names the file and the place.
struct TokenizerJSONNode {
  let value: TokenizerJSON
  let path: String
  let file: String

  func invalid(_ message: String) -> LowbitError { .invalidInput("\(file): \(place): \(message)") }
  func unsupported(_ message: String) -> LowbitError { .unsupported("\(file): \(place): \(message)") }
  var place: String { path.isEmpty ? "top level" : path }
  func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

  var isNull: Bool {
    if case .null = value { return true }
    return false
  }

  func members() throws -> [(key: String, value: TokenizerJSONNode)] {
    guard case .object(let items) = value else { throw invalid("expected an object, found \(value.typeName)") }
    return items.map { ($0.key, TokenizerJSONNode(value: $0.value, path: childPath($0.key), file: file)) }
  }

  func elements() throws -> [TokenizerJSONNode] {
    guard case .array(let items) = value else { throw invalid("expected an array, found \(value.typeName)") }
    return items.enumerated().map { TokenizerJSONNode(value: $1, path: "\(path)[\($0)]", file: file) }
  }

  func string() throws -> String {
    guard case .string(let text) = value else { throw invalid("expected a string, found \(value.typeName)") }
    return text
  }

  func int() throws -> Int {
    switch value {
    case .int(let number): return number
    case .double(let number) where number == number.rounded() && abs(number) < 1e15: return Int(number)
    default: throw invalid("expected an integer, found \(value.typeName)")
    }
  }

  func double() throws -> Double {
    switch value {
    case .int(let number): return Double(number)
    case .double(let number): return number
    default: throw invalid("expected a number, found \(value.typeName)")
    }
  }

  func bool() throws -> Bool {
    guard case .bool(let flag) = value else { throw invalid("expected a boolean, found \(value.typeName)") }
    return flag
  }

  /// The member `key` of this object, or nil when it is absent or null (the last one wins when repeated).
  func member(_ key: String) throws -> TokenizerJSONNode? {
    guard case .object(let items) = value else { throw invalid("expected an object, found \(value.typeName)") }
    guard let found = items.last(where: { $0.key.utf8.elementsEqual(key.utf8) }) else { return nil }
    if case .null = found.value { return nil }
    return TokenizerJSONNode(value: found.value, path: childPath(key), file: file)
  }

  func required(_ key: String) throws -> TokenizerJSONNode {
    guard let node = try member(key) else {
      throw invalid("missing member '\(key)'")
    }
    return node
  }

  func string(_ key: String) throws -> String { try required(key).string() }
  func optionalString(_ key: String) throws -> String? { try member(key)?.string() }
  func bool(_ key: String, default fallback: Bool) throws -> Bool { try member(key)?.bool() ?? fallback }
  func int(_ key: String, default fallback: Int) throws -> Int { try member(key)?.int() ?? fallback }

  /// The `type` member, which names the normalizer, pre-tokenizer, model or post-processor.
  func typeTag() throws -> String { try string("type") }
}
