import LowbitCore

/// Reads a `vocab` object (token → id) into a dictionary keyed by the token's exact UTF-8 bytes.
func loadTokenizerVocab(_ node: TokenizerJSONNode) throws -> [[UInt8]: Int] {
  let members = try node.members()
  var vocab: [[UInt8]: Int] = [:]
  vocab.reserveCapacity(members.count)
  for (token, idNode) in members {
    let id = try idNode.int()
    guard id >= 0 else { throw idNode.invalid("negative token id \(id)") }
    vocab[Array(token.utf8)] = id
  }
  return vocab
}

/// The `WordPiece` model: greedy longest-match-first subwords over a vocabulary.
struct WordPieceModel: Sendable {
  let vocab: [[UInt8]: Int]
  let unkId: Int
  let prefix: [UInt8]
  let maxCharacters: Int

  init(_ node: TokenizerJSONNode) throws {
    let vocabNode = try node.required("vocab")
    vocab = try loadTokenizerVocab(vocabNode)
    let unk = try node.optionalString("unk_token") ?? "[UNK]"
    guard let unkId = vocab[Array(unk.utf8)] else {
      throw node.invalid("unk_token '\(unk)' is not in the vocabulary")
    }
    self.unkId = unkId
    prefix = Array((try node.optionalString("continuing_subword_prefix") ?? "##").utf8)
    maxCharacters = try node.int("max_input_chars_per_word", default: 100)
  }

  /// Appends the ids of `word`: a word longer than `maxCharacters` scalars is the unknown token;
  /// otherwise, from the start, the longest vocabulary entry that begins there is taken (with the
  /// continuing-subword prefix after the first piece), and if some position has none, the whole word
  /// is the unknown token.
  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
    guard word.count <= maxCharacters else { ids.append(unkId); return }
    var bytes: [UInt8] = []
    var bounds: [Int] = [0]  // byte offset of each scalar boundary
    bytes.reserveCapacity(word.count)
    bounds.reserveCapacity(word.count + 1)
    for c in word {
      UTF8.encode(c) { bytes.append($0) }
      bounds.append(bytes.count)
    }
    if let id = vocab[bytes] { ids.append(id); return }
    var pieces: [Int] = []
    var key: [UInt8] = []
    var start = 0
    while start < word.count {
      var end = word.count
      var found: Int?
      while end > start {
        key.removeAll(keepingCapacity: true)
        if start > 0 { key.append(contentsOf: prefix) }
        key.append(contentsOf: bytes[bounds[start]..<bounds[end]])
        if let id = vocab[key] { found = id; break }
        end -= 1
      }
      guard let id = found else { ids.append(unkId); return }
      pieces.append(id)
      start = end
    }
    ids.append(contentsOf: pieces)
  }
}
