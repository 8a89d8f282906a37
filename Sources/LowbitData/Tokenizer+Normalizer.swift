import LowbitCore

/// A text normalizer from tokenizer.json's `normalizer` section, applied to Unicode scalars.
indirect enum TokenizerNormalizer: Sendable {
  /// `BertNormalizer`: in order, (1) clean_text drops NUL, U+FFFD and control scalars and turns
  /// every whitespace scalar into a space; (2) handle_chinese_chars puts a space on each side of
  /// every CJK ideograph; (3) strip_accents (defaulting to `lowercase` when null) takes NFD and
  /// drops nonspacing marks (Mn); (4) lowercase applies each scalar's full lowercase mapping.
  case bert(cleanText: Bool, chineseChars: Bool, stripAccents: Bool, lowercase: Bool)
  /// `Lowercase`: each scalar's full lowercase mapping.
  case lowercase
  /// `NFD`, `NFC`, `NFKD`, `NFKC`.
  case unicodeForm(TokenizerUnicode.Form)
  /// `StripAccents`: drops every combining mark (Mn, Mc, Me; Unicode 9.0).
  case stripAccents
  /// `Strip`: removes leading and/or trailing whitespace.
  case strip(left: Bool, right: Bool)
  /// `Replace` with a literal string pattern: every non-overlapping occurrence, left to right.
  case replace(pattern: [Unicode.Scalar], content: [Unicode.Scalar])
  /// `Prepend`: puts the text in front of any non-empty input.
  case prepend([Unicode.Scalar])
  /// `Sequence`: each normalizer in turn.
  case sequence([TokenizerNormalizer])

  static func load(_ node: TokenizerJSONNode) throws -> TokenizerNormalizer {
    let type = try node.typeTag()
    switch type {
    case "BertNormalizer":
      let lowercase = try node.bool("lowercase", default: true)
      return .bert(
        cleanText: try node.bool("clean_text", default: true),
        chineseChars: try node.bool("handle_chinese_chars", default: true),
        stripAccents: try node.member("strip_accents")?.bool() ?? lowercase, lowercase: lowercase)
    case "Lowercase": return .lowercase
    case "NFD": return .unicodeForm(.nfd)
    case "NFC": return .unicodeForm(.nfc)
    case "NFKD": return .unicodeForm(.nfkd)
    case "NFKC": return .unicodeForm(.nfkc)
    case "StripAccents": return .stripAccents
    case "Strip":
      return .strip(left: try node.bool("strip_left", default: true), right: try node.bool("strip_right", default: true))
    case "Prepend": return .prepend(Array(try node.string("prepend").unicodeScalars))
    case "Replace":
      let pattern = try node.required("pattern")
      guard let literal = try pattern.member("String") else {
        throw pattern.unsupported("only a literal {\"String\": ...} pattern is supported for Replace")
      }
      let scalars = Array(try literal.string().unicodeScalars)
      guard !scalars.isEmpty else { throw literal.invalid("empty Replace pattern") }
      return .replace(pattern: scalars, content: Array(try node.string("content").unicodeScalars))
    case "Sequence":
      return .sequence(try node.required("normalizers").elements().map { try load($0) })
    default:
      throw node.unsupported("unsupported normalizer type '\(type)'")
    }
  }

  /// The normalized form of `s`.
  func apply(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
    switch self {
    case let .bert(cleanText, chineseChars, stripAccents, lowercase):
      var out = s
      if cleanText {
        out = out.compactMap { c in
          if c.value == 0 || c.value == 0xFFFD || TokenizerUnicode.isControl(c) { return nil }
          return TokenizerUnicode.isWhitespace(c) ? " " : c
        }
      }
      if chineseChars, out.contains(where: TokenizerUnicode.isChineseCharacter) {
        var spaced: [Unicode.Scalar] = []
        spaced.reserveCapacity(out.count + 16)
        for c in out {
          if TokenizerUnicode.isChineseCharacter(c) {
            spaced.append(" "); spaced.append(c); spaced.append(" ")
          } else {
            spaced.append(c)
          }
        }
        out = spaced
      }
      if stripAccents {
        out = TokenizerUnicode.normalized(out, .nfd).filter { !TokenizerUnicode.isNonspacingMark($0) }
      }
      return lowercase ? TokenizerUnicode.lowercased(out) : out
    case .lowercase:
      return TokenizerUnicode.lowercased(s)
    case .unicodeForm(let form):
      return TokenizerUnicode.normalized(s, form)
    case .stripAccents:
      return s.filter { !TokenizerUnicode.isCombiningMark($0) }
    case let .strip(left, right):
      var slice = s[...]
      if left { while let c = slice.first, TokenizerUnicode.isWhitespace(c) { slice = slice.dropFirst() } }
      if right { while let c = slice.last, TokenizerUnicode.isWhitespace(c) { slice = slice.dropLast() } }
      return Array(slice)
    case let .replace(pattern, content):
      var out: [Unicode.Scalar] = []
      var i = 0
      while i < s.count {
        if s.count - i >= pattern.count, s[i..<i + pattern.count].elementsEqual(pattern) {
          out.append(contentsOf: content)
          i += pattern.count
        } else {
          out.append(s[i])
          i += 1
        }
      }
      return out
    case .prepend(let prefix):
      return s.isEmpty ? s : prefix + s
    case .sequence(let parts):
      return parts.reduce(s) { $1.apply($0) }
    }
  }
}
