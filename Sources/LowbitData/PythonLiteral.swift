import LowbitCore

/// A Python literal as found in an NPY header: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (3, 4), }`. Parsed by a small recursive-descent parser, never evaluated.
enum PythonLiteral: Equatable {
  case string(String)
  case int(Int)
  case bool(Bool)
  case none
  case tuple([PythonLiteral])
  case list([PythonLiteral])
  case dict([(key: PythonLiteral, value: PythonLiteral)])

  static func == (a: PythonLiteral, b: PythonLiteral) -> Bool {
    switch (a, b) {
    case (.string(let x), .string(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.bool(let x), .bool(let y)): return x == y
    case (.none, .none): return true
    case (.tuple(let x), .tuple(let y)), (.list(let x), .list(let y)): return x == y
    case (.dict(let x), .dict(let y)):
      return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    default: return false
    }
  }

  /// The value stored under the string key `key` of a dict literal.
  subscript(key: String) -> PythonLiteral? {
    guard case .dict(let items) = self else { return nil }
    return items.first { $0.key == .string(key) }?.value
  }

  /// Parses `text`, which must hold exactly one literal (surrounding whitespace allowed).
  /// Errors name `name` (the file) and the character offset of the problem.
  static func parse(_ text: String, name: String) throws -> PythonLiteral {
    var parser = Parser(chars: Array(text.unicodeScalars), name: name)
    let value = try parser.value(depth: 0)
    parser.skipSpace()
    guard parser.position == parser.chars.count else {
      throw parser.error("unexpected text after the header literal")
    }
    return value
  }

  private struct Parser {
    let chars: [Unicode.Scalar]
    let name: String
    var position = 0

    func error(_ problem: String) -> LowbitError {
      .invalidInput("\(name): malformed NPY header at character \(position): \(problem)")
    }

    var peek: Unicode.Scalar? { position < chars.count ? chars[position] : nil }

    mutating func skipSpace() {
      while let c = peek, c == " " || c == "\t" || c == "\n" || c == "\r" { position += 1 }
    }

    mutating func value(depth: Int) throws -> PythonLiteral {
      guard depth < 32 else { throw error("literals nested too deeply") }
      skipSpace()
      guard let c = peek else { throw error("unexpected end of header") }
      switch c {
      case "{": return try dict(depth: depth)
      case "(":
        let (items, trailingComma) = try sequence(close: ")", depth: depth)
        // `(x)` is just x in Python; `(x,)` is a one-element tuple.
        if items.count == 1 && !trailingComma { return items[0] }
        return .tuple(items)
      case "[": return .list(try sequence(close: "]", depth: depth).items)
      case "'", "\"": return .string(try string())
      case "-", "+", "0"..."9": return .int(try integer())
      default:
        let word = identifier()
        switch word {
        case "True": return .bool(true)
        case "False": return .bool(false)
        case "None": return .none
        default:
          throw error(word.isEmpty ? "unexpected character '\(c)'" : "unknown name '\(word)'")
        }
      }
    }

    mutating func dict(depth: Int) throws -> PythonLiteral {
      position += 1  // {
      var items: [(key: PythonLiteral, value: PythonLiteral)] = []
      while true {
        skipSpace()
        if peek == "}" {
          position += 1
          return .dict(items)
        }
        let key = try value(depth: depth + 1)
        skipSpace()
        guard peek == ":" else { throw error("expected ':' after a dict key") }
        position += 1
        let item = try value(depth: depth + 1)
        items.append((key, item))
        skipSpace()
        if peek == "," {
          position += 1
          continue
        }
        guard peek == "}" else { throw error("expected ',' or '}' in a dict") }
      }
    }

    mutating func sequence(close: Unicode.Scalar, depth: Int) throws -> (
      items: [PythonLiteral], trailingComma: Bool
    ) {
      position += 1  // ( or [
      var items: [PythonLiteral] = []
      var trailingComma = false
      while true {
        skipSpace()
        if peek == close {
          position += 1
          return (items, trailingComma)
        }
        items.append(try value(depth: depth + 1))
        skipSpace()
        trailingComma = false
        if peek == "," {
          position += 1
          trailingComma = true
          continue
        }
        guard peek == close else { throw error("expected ',' or '\(close)'") }
      }
    }

    mutating func string() throws -> String {
      let quote = chars[position]
      position += 1
      var result = String.UnicodeScalarView()
      while let c = peek {
        position += 1
        if c == quote { return String(result) }
        if c == "\n" { break }
        guard c == "\\" else {
          result.append(c)
          continue
        }
        guard let e = peek else { break }
        position += 1
        switch e {
        case "n": result.append("\n")
        case "t": result.append("\t")
        case "r": result.append("\r")
        case "0": result.append("\0")
        case "x":
          guard position + 2 <= chars.count,
            let v = UInt32(
              String(String.UnicodeScalarView(chars[position..<position + 2])), radix: 16),
            let s = Unicode.Scalar(v)
          else { throw error("bad \\x escape in a string") }
          position += 2
          result.append(s)
        default: result.append(e)  // \\, \', \" and anything else taken literally
        }
      }
      throw error("unterminated string")
    }

    mutating func integer() throws -> Int {
      var text = ""
      if let c = peek, c == "-" || c == "+" {
        text.unicodeScalars.append(c)
        position += 1
      }
      while let c = peek, ("0"..."9").contains(c) || c == "_" {
        if c != "_" { text.unicodeScalars.append(c) }
        position += 1
      }
      if let c = peek, c == "L" || c == "l" { position += 1 }  // Python 2 long suffix
      guard let value = Int(text) else {
        throw error(text.count > 2 ? "integer \(text) out of range" : "malformed integer")
      }
      return value
    }

    mutating func identifier() -> String {
      var word = ""
      while let c = peek, c.properties.isAlphabetic || c == "_" {
        word.unicodeScalars.append(c)
        position += 1
      }
      return word
    }
  }
}
