import LowbitCore

/// How a splitting pre-tokenizer treats the scalars it matches (tokenizers' `SplitDelimiterBehavior`).
enum TokenizerSplitBehavior: String, Sendable {
  /// Matches are dropped.
  case removed = "Removed"
  /// Each match is a piece of its own.
  case isolated = "Isolated"
  /// A match joins the piece before it, when that piece is not itself a match.
  case mergedWithPrevious = "MergedWithPrevious"
  /// A match joins the piece after it, when that piece is not itself a match.
  case mergedWithNext = "MergedWithNext"
  /// Runs of adjacent matches form one piece.
  case contiguous = "Contiguous"
}

/// A pre-tokenizer from tokenizer.json's `pre_tokenizer` section: splits normalized text into words.
indirect enum TokenizerPreTokenizer: Sendable {
  /// `BertPreTokenizer`: splits on whitespace (dropped) and makes every punctuation scalar a word.
  case bert
  /// `Whitespace`: the matches of `\w+|[^\w\s]+`; whitespace is dropped.
  case whitespace
  /// `WhitespaceSplit`: splits on whitespace, which is dropped.
  case whitespaceSplit
  /// `Punctuation`: punctuation scalars (as for BERT) split off with the given behavior.
  case punctuation(TokenizerSplitBehavior)
  /// `Digits`: numeric scalars split off, each alone or as runs.
  case digits(individual: Bool)
  /// `ByteLevel`: see `byteLevelWords`.
  case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
  /// `Sequence`: each pre-tokenizer applied to every piece of the previous one.
  case sequence([TokenizerPreTokenizer])

  static func load(_ node: TokenizerJSONNode) throws -> TokenizerPreTokenizer {
    let type = try node.typeTag()
    switch type {
    case "BertPreTokenizer": return .bert
    case "Whitespace": return .whitespace
    case "WhitespaceSplit": return .whitespaceSplit
    case "Punctuation":
      guard let behavior = try node.member("behavior") else { return .punctuation(.isolated) }
      let name = try behavior.string()
      guard let parsed = TokenizerSplitBehavior(rawValue: name) else {
        throw behavior.unsupported("unsupported split behavior '\(name)'")
      }
      return .punctuation(parsed)
    case "Digits": return .digits(individual: try node.bool("individual_digits", default: false))
    case "ByteLevel":
      return .byteLevel(
        addPrefixSpace: try node.bool("add_prefix_space", default: true),
        useRegex: try node.bool("use_regex", default: true))
    case "Sequence":
      return .sequence(try node.required("pretokenizers").elements().map { try load($0) })
    default:
      throw node.unsupported("unsupported pre-tokenizer type '\(type)'")
    }
  }

  /// The words of `text`, in order; empty words are never produced.
  func words(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
    var out: [[Unicode.Scalar]] = []
    split(text, into: &out)
    return out
  }

  func split(_ piece: [Unicode.Scalar], into out: inout [[Unicode.Scalar]]) {
    guard !piece.isEmpty else { return }
    switch self {
    case .bert:
      var word: [Unicode.Scalar] = []
      for c in piece {
        if TokenizerUnicode.isWhitespace(c) {
          if !word.isEmpty { out.append(word); word.removeAll() }
        } else if TokenizerUnicode.isPunctuation(c) {
          if !word.isEmpty { out.append(word); word.removeAll() }
          out.append([c])
        } else {
          word.append(c)
        }
      }
      if !word.isEmpty { out.append(word) }
    case .whitespace:
      // Runs of one class: 1 = word scalars, 2 = other non-space scalars; whitespace ends a run.
      var word: [Unicode.Scalar] = []
      var wordClass = 0
      for c in piece {
        let cls = TokenizerUnicode.isWordCharacter(c) ? 1 : (TokenizerUnicode.isWhitespace(c) ? 0 : 2)
        if cls != wordClass, !word.isEmpty { out.append(word); word.removeAll() }
        wordClass = cls
        if cls != 0 { word.append(c) }
      }
      if !word.isEmpty { out.append(word) }
    case .whitespaceSplit:
      var word: [Unicode.Scalar] = []
      for c in piece {
        if TokenizerUnicode.isWhitespace(c) {
          if !word.isEmpty { out.append(word); word.removeAll() }
        } else {
          word.append(c)
        }
      }
      if !word.isEmpty { out.append(word) }
    case .punctuation(let behavior):
      Self.split(piece, behavior: behavior, into: &out, where: TokenizerUnicode.isPunctuation)
    case .digits(let individual):
      Self.split(piece, behavior: individual ? .isolated : .contiguous, into: &out, where: TokenizerUnicode.isNumeric)
    case let .byteLevel(addPrefixSpace, useRegex):
      var text = piece
      if addPrefixSpace, text.first != " " { text.insert(" ", at: 0) }
      if useRegex {
        for range in Self.gpt2Ranges(text) { out.append(Self.byteLevelMapped(text[range])) }
      } else {
        out.append(Self.byteLevelMapped(text[...]))
      }
    case .sequence(let parts):
      var pieces = [piece]
      for part in parts {
        var next: [[Unicode.Scalar]] = []
        for p in pieces { part.split(p, into: &next) }
        pieces = next
      }
      out.append(contentsOf: pieces)
    }
  }

  /// Splits `piece` where `isMatch` holds; every matching scalar is a match of its own.
  static func split(
    _ piece: [Unicode.Scalar], behavior: TokenizerSplitBehavior, into out: inout [[Unicode.Scalar]],
    where isMatch: (Unicode.Scalar) -> Bool
  ) {
    // Segments: runs of non-matching scalars, and single matching scalars.
    var segments: [(text: [Unicode.Scalar], match: Bool)] = []
    for c in piece {
      if isMatch(c) {
        segments.append(([c], true))
      } else if let last = segments.last, !last.match {
        segments[segments.count - 1].text.append(c)
      } else {
        segments.append(([c], false))
      }
    }
    var result: [(text: [Unicode.Scalar], match: Bool)] = []
    switch behavior {
    case .removed: result = segments.filter { !$0.match }
    case .isolated: result = segments
    case .contiguous:
      for s in segments {
        if s.match, let last = result.last, last.match {
          result[result.count - 1].text += s.text
        } else {
          result.append(s)
        }
      }
    case .mergedWithPrevious:
      var previousWasMatch = false
      for s in segments {
        if s.match, !previousWasMatch, !result.isEmpty {
          result[result.count - 1].text += s.text
        } else {
          result.append(s)
        }
        previousWasMatch = s.match
      }
    case .mergedWithNext:
      var nextWasMatch = false
      for s in segments.reversed() {
        if s.match, !nextWasMatch, !result.isEmpty {
          result[result.count - 1].text = s.text + result[result.count - 1].text
        } else {
          result.append(s)
        }
        nextWasMatch = s.match
      }
      result.reverse()
    }
    for s in result where !s.text.isEmpty { out.append(s.text) }
  }

  /// The matches of GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
  /// found left to right with the alternatives tried in order. They cover the whole text.
  static func gpt2Ranges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
    let n = s.count
    var ranges: [Range<Int>] = []
    var i = 0
    // 0 = whitespace, 1 = letter, 2 = number, 3 = anything else (the classes are disjoint).
    func kind(_ k: Int) -> Int {
      let c = s[k]
      if TokenizerUnicode.isWhitespace(c) { return 0 }
      if TokenizerUnicode.isLetter(c) { return 1 }
      return TokenizerUnicode.isNumber(c) ? 2 : 3
    }
    func isSpace(_ k: Int) -> Bool { TokenizerUnicode.isWhitespace(s[k]) }
    while i < n {
      var end = i
      if s[i] == "'", i + 1 < n {
        let next = s[i + 1]
        if next == "s" || next == "t" || next == "m" || next == "d" {
          end = i + 2
        } else if i + 2 < n,
          (next == "r" && s[i + 2] == "e") || (next == "v" && s[i + 2] == "e") || (next == "l" && s[i + 2] == "l")
        {
          end = i + 3
        }
      }
      if end == i {
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a run of one non-space class, with one
        // space (U+0020) in front when the run follows it.
        let start = s[i] == " " && i + 1 < n ? i + 1 : i
        let cls = kind(start)
        if cls != 0 {
          var k = start + 1
          while k < n, kind(k) == cls { k += 1 }
          end = k
        }
      }
      if end == i, isSpace(i) {
        var k = i
        while k < n, isSpace(k) { k += 1 }
        // `\s+(?!\S)`: the whole run at the end of text, else the run less its last scalar; `\s+` otherwise.
        end = (k == n || k - i == 1) ? k : k - 1
      }
      if end == i { end = i + 1 }  // unreachable: every scalar is space, letter, number or other
      ranges.append(i..<end)
      i = end
    }
    return ranges
  }

  /// GPT-2's reversible byte-to-character table: printable Latin-1 bytes map to themselves, the
  /// other 68 bytes to U+0100 onwards in byte order.
  static let byteToScalar: [Unicode.Scalar] = {
    var table: [Unicode.Scalar] = []
    var extra: UInt32 = 0
    for byte in 0...255 as ClosedRange<UInt32> {
      let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
      let code = printable ? byte : 256 + extra
      if !printable { extra += 1 }
      table.append(Unicode.Scalar(code) ?? " ")
    }
    return table
  }()

  /// The UTF-8 bytes of `s`, each replaced by its `byteToScalar` character.
  static func byteLevelMapped(_ s: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    out.reserveCapacity(s.count)
    for c in s {
      if c.isASCII {
        out.append(byteToScalar[Int(c.value)])
      } else {
        UTF8.encode(c) { out.append(byteToScalar[Int($0)]) }
      }
    }
    return out
  }
}
