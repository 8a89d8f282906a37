import Foundation

/// Character classes and normalization forms as the Hugging Face `tokenizers` library sees them.
///
/// `tokenizers` takes its Unicode data from several Rust crates of different ages, so a class is
/// judged with the Unicode version its crate uses: scalars assigned later count as unassigned.
/// BERT's punctuation, control and nonspacing-mark tests use Unicode 8.0 categories; `StripAccents`
/// and the NFD/NFC/NFKD/NFKC forms use Unicode 9.0 data; the regex classes (`\p{L}`, `\p{N}`, `\w`)
/// of the ByteLevel and Whitespace pre-tokenizers use Unicode 16.0; whitespace, lowercase mappings
/// and `is_numeric` use the current data.
enum TokenizerUnicode {
  /// Whether `c` was assigned in Unicode `major.minor` or earlier.
  static func assigned(_ c: Unicode.Scalar, by major: Int, _ minor: Int) -> Bool {
    guard let age = c.properties.age else { return false }
    return age.major < major || (age.major == major && age.minor <= minor)
  }

  /// Unicode White_Space (which includes tab, line feed, vertical tab, form feed, carriage return).
  static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
    c == " " || (c.value >= 0x09 && c.value <= 0x0D) || (c.value >= 0x80 && c.properties.isWhitespace)
  }

  /// BERT's "control": a Cc, Cf, Co or Cs scalar of Unicode 8.0, except tab, newline and carriage return.
  static func isControl(_ c: Unicode.Scalar) -> Bool {
    if c == "\t" || c == "\n" || c == "\r" { return false }
    if c.value >= 0x20 && c.value < 0x7F { return false }
    switch c.properties.generalCategory {
    case .control, .format, .privateUse, .surrogate: return assigned(c, by: 8, 0)
    default: return false
    }
  }

  /// BERT's punctuation: ASCII punctuation (which includes `$+<=>^`|~`) or a P* scalar of Unicode 8.0.
  static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
    if c.isASCII {
      let v = c.value
      return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v)
        || (0x7B...0x7E).contains(v)
    }
    if c.value == 0x166D || c.value == 0x111C9 { return true }  // Po in Unicode 8.0, recategorized since
    switch c.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
      .initialPunctuation, .finalPunctuation, .otherPunctuation:
      return assigned(c, by: 8, 0)
    default: return false
    }
  }

  /// A nonspacing mark (Mn) of Unicode 8.0: what BERT's accent stripping removes after NFD.
  static func isNonspacingMark(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0..<0x300: return false
    case 0x1734, 0x1171E: return true  // Mn in Unicode 8.0, Mc since
    case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false  // not Mn in Unicode 8.0
    default: return c.properties.generalCategory == .nonspacingMark && assigned(c, by: 8, 0)
    }
  }

  /// A combining mark (Mn, Mc, Me) of Unicode 9.0: what the `StripAccents` normalizer removes.
  static func isCombiningMark(_ c: Unicode.Scalar) -> Bool {
    if c.value < 0x300 || c.value == 0x111C9 { return false }
    if c.value == 0x1CF2 || c.value == 0x1CF3 { return true }  // Mc in Unicode 9.0
    switch c.properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark: return assigned(c, by: 9, 0)
    default: return false
    }
  }

  /// The CJK ideograph blocks BERT surrounds with spaces (the "Chinese characters" of its reference code).
  static func isChineseCharacter(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
      0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
      return true
    default: return false
    }
  }

  /// The regex class `\p{L}` (general category L*, Unicode 16.0).
  static func isLetter(_ c: Unicode.Scalar) -> Bool {
    if c.isASCII { return (c.value | 0x20) >= 0x61 && (c.value | 0x20) <= 0x7A }
    switch c.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
      return assigned(c, by: 16, 0)
    default: return false
    }
  }

  /// The regex class `\p{N}` (general category N*, Unicode 16.0).
  static func isNumber(_ c: Unicode.Scalar) -> Bool {
    if c.isASCII { return c.value >= 0x30 && c.value <= 0x39 }
    switch c.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return assigned(c, by: 16, 0)
    default: return false
    }
  }

  /// Rust's `char::is_numeric` (general category N*, current data), used by `Digits`.
  static func isNumeric(_ c: Unicode.Scalar) -> Bool {
    switch c.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
  }

  /// The regex class `\w`: Alphabetic, marks, decimal digits, connector punctuation, joiners (Unicode 16.0).
  static func isWordCharacter(_ c: Unicode.Scalar) -> Bool {
    if c.isASCII { return isLetter(c) || isNumber(c) || c == "_" }
    guard assigned(c, by: 16, 0) else { return false }
    if c.properties.isAlphabetic || c.value == 0x200C || c.value == 0x200D { return true }
    switch c.properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
  }

  /// The scalars' full lowercase mappings, one scalar at a time (no context rules).
  static func lowercased(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(s.count)
    for c in s {
      if c.isASCII {
        out.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(UInt8(c.value + 32)) : c)
      } else {
        out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
      }
    }
    return out
  }

  enum Form { case nfd, nfc, nfkd, nfkc }

  /// `s` in normalization form `form` (UAX #15 with Unicode 9.0 data): full canonical (or
  /// compatibility) decomposition, canonical reordering of combining marks, then for NFC/NFKC
  /// canonical composition. Scalars assigned after 9.0 are left alone, with combining class 0.
  static func normalized(_ s: [Unicode.Scalar], _ form: Form) -> [Unicode.Scalar] {
    if s.allSatisfy({ $0.value < 0xA0 }) { return s }
    let compatibility = form == .nfkd || form == .nfkc
    let table = compatibility ? TokenizerNormalizationData.compatibility : TokenizerNormalizationData.canonical
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(s.count + 8)
    for c in s {
      if c.value < 0xA0 {
        out.append(c)
      } else if c.value >= 0xAC00 && c.value <= 0xD7A3 {  // Hangul syllable: L V (T)
        let index = c.value - 0xAC00
        out.append(Unicode.Scalar(0x1100 + index / 588) ?? c)
        out.append(Unicode.Scalar(0x1161 + (index % 588) / 28) ?? c)
        if index % 28 != 0 { out.append(Unicode.Scalar(0x11A7 + index % 28) ?? c) }
      } else if let parts = table.decompositions[c.value] {
        out.append(contentsOf: parts)
      } else {
        out.append(c)
      }
    }
    // Canonical reordering: a stable sort of each run of non-starters by combining class.
    if out.count > 1 {
      for i in 1..<out.count {
        let cc = combiningClass(out[i])
        guard cc != 0 else { continue }
        var j = i
        while j > 0, combiningClass(out[j - 1]) > cc {
          out.swapAt(j, j - 1)
          j -= 1
        }
      }
    }
    return form == .nfc || form == .nfkc ? composed(out) : out
  }

  /// The canonical combining class of `c` in Unicode 9.0 (0 for later scalars).
  static func combiningClass(_ c: Unicode.Scalar) -> UInt8 {
    if c.value < 0x300 { return 0 }
    let cc = c.properties.canonicalCombiningClass.rawValue
    return cc == 0 || !assigned(c, by: 9, 0) ? 0 : cc
  }

  /// Canonical composition of a decomposed, reordered sequence.
  static func composed(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
    let composites = TokenizerNormalizationData.canonical.composites
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(s.count)
    var starter: Int? = nil
    var lastClass: UInt8 = 0
    for c in s {
      let cc = combiningClass(c)
      if let index = starter, index == out.count - 1 || (lastClass != 0 && lastClass < cc) {
        let first = out[index]
        var result: Unicode.Scalar?
        let v = c.value
        if (0x1100...0x1112).contains(first.value), (0x1161...0x1175).contains(v) {
          result = Unicode.Scalar(0xAC00 + ((first.value - 0x1100) * 21 + (v - 0x1161)) * 28)
        } else if (0xAC00...0xD7A3).contains(first.value), (first.value - 0xAC00) % 28 == 0, (0x11A8...0x11C2).contains(v) {
          result = Unicode.Scalar(first.value + (v - 0x11A7))
        } else {
          result = composites[UInt64(first.value) << 32 | UInt64(v)]
        }
        if let result {
          out[index] = result
          continue
        }
      }
      if cc == 0 { starter = out.count }
      out.append(c)
      lastClass = cc
    }
    return out
  }
}

/// Unicode 9.0 decomposition and composition tables, built once on first use from Foundation's
/// decomposition of each single scalar (about 20 ms per table).
struct TokenizerNormalizationData: Sendable {
  /// Full decompositions of the scalars that have one (Hangul syllables excluded).
  let decompositions: [UInt32: [Unicode.Scalar]]
  /// Primary composites by `first << 32 | second` (canonical table only).
  let composites: [UInt64: Unicode.Scalar]

  static let canonical = TokenizerNormalizationData(compatibility: false)
  static let compatibility = TokenizerNormalizationData(compatibility: true)

  init(compatibility: Bool) {
    var decompositions: [UInt32: [Unicode.Scalar]] = [:]
    for v in UInt32(0xA0)...0x2FA1F {
      // Blocks without decompositions: CJK ideographs, Hangul syllables, surrogates, private use.
      if (0x3400...0x4DBF).contains(v) || (0x4E00...0x9FFF).contains(v) || (0xAC00...0xD7A3).contains(v)
        || (0xD800...0xF8FF).contains(v) || (0x20000...0x2F7FF).contains(v)
      {
        continue
      }
      guard let c = Unicode.Scalar(v), TokenizerUnicode.assigned(c, by: 9, 0) else { continue }
      let text = String(Character(c))
      let parts = Array(
        (compatibility ? text.decomposedStringWithCompatibilityMapping : text.decomposedStringWithCanonicalMapping)
          .unicodeScalars)
      if parts != [c] { decompositions[v] = parts }
    }
    self.decompositions = decompositions
    guard !compatibility else {
      composites = [:]
      return
    }
    // A composite's canonical mapping is (P, M) where P's full decomposition is its own minus M.
    var byParts: [[UInt32]: UInt32] = [:]
    for (v, parts) in decompositions {
      let key = parts.map(\.value)
      if let existing = byParts[key], let c = Unicode.Scalar(existing), !c.properties.isFullCompositionExclusion {
        continue
      }
      byParts[key] = v
    }
    var composites: [UInt64: Unicode.Scalar] = [:]
    for (v, parts) in decompositions where parts.count >= 2 {
      guard let c = Unicode.Scalar(v), !c.properties.isFullCompositionExclusion else { continue }
      var key = parts.map(\.value)
      for j in stride(from: key.count - 1, through: 1, by: -1) {
        let mark = key.remove(at: j)
        if let first = key.count == 1 ? key.first : byParts[key] {
          composites[UInt64(first) << 32 | UInt64(mark)] = c
          break
        }
        key.insert(mark, at: j)
      }
    }
    self.composites = composites
  }
}
