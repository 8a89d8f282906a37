import LowbitCore

/// Finds `added_tokens` in text: at each position the longest token that starts there wins, and
/// the leftmost match is taken first (leftmost-longest), comparing Unicode scalars exactly.
struct AddedTokenSplitter: Sendable {
  struct Pattern: Sendable {
    let scalars: [Unicode.Scalar]
    let id: Int
    let leftStrip: Bool
    let rightStrip: Bool
    let singleWord: Bool
  }

  /// A piece of text between matches, or the id of a matched token.
  enum Piece {
    case text([Unicode.Scalar])
    case token(Int)
  }

  /// Patterns by first scalar, longest first.
  let patterns: [Unicode.Scalar: [Pattern]]

  init(_ list: [Pattern]) {
    var table: [Unicode.Scalar: [Pattern]] = [:]
    for pattern in list {
      guard let first = pattern.scalars.first else { continue }
      table[first, default: []].append(pattern)
    }
    patterns = table.mapValues { $0.sorted { $0.scalars.count > $1.scalars.count } }
  }

  var isEmpty: Bool { patterns.isEmpty }

  /// `text` cut at every match. `lstrip`/`rstrip` tokens also take the whitespace on that side
  /// (not reaching into the previous match); `single_word` tokens match only when neither
  /// neighbour is a `\w` scalar.
  func split(_ text: [Unicode.Scalar]) -> [Piece] {
    guard !patterns.isEmpty else { return [.text(text)] }
    var pieces: [Piece] = []
    var textStart = 0
    var i = 0
    let n = text.count
    while i < n {
      guard let candidates = patterns[text[i]],
        let found = candidates.first(where: { p in
          n - i >= p.scalars.count && text[i..<i + p.scalars.count].elementsEqual(p.scalars)
        })
      else {
        i += 1
        continue
      }
      var start = i
      var end = i + found.scalars.count
      if found.singleWord,
        (start > 0 && TokenizerUnicode.isWordCharacter(text[start - 1]))
          || (end < n && TokenizerUnicode.isWordCharacter(text[end]))
      {
        i = end  // a rejected match is still consumed, as the reference's match iterator does
        continue
      }
      if found.leftStrip { while start > textStart, TokenizerUnicode.isWhitespace(text[start - 1]) { start -= 1 } }
      if found.rightStrip { while end < n, TokenizerUnicode.isWhitespace(text[end]) { end += 1 } }
      if start > textStart { pieces.append(.text(Array(text[textStart..<start]))) }
      pieces.append(.token(found.id))
      textStart = end
      i = end
    }
    if textStart < n { pieces.append(.text(Array(text[textStart...]))) }
    return pieces
  }
}

/// The special tokens and type ids a post-processor puts around a single sequence.
struct TokenizerTemplate: Sendable {
  enum Item: Sendable {
    case special(ids: [Int], typeId: Int)
    case sequence(typeId: Int)
  }

  var items: [Item] = [.sequence(typeId: 0)]

  /// How many special-token ids the template adds.
  var addedCount: Int {
    items.reduce(0) { total, item in
      if case .special(let ids, _) = item { return total + ids.count }
      return total
    }
  }

  /// The ids and type ids of `content` framed by the template.
  func apply(_ content: [Int]) -> (ids: [Int], typeIds: [Int]) {
    var ids: [Int] = []
    var typeIds: [Int] = []
    ids.reserveCapacity(content.count + addedCount)
    typeIds.reserveCapacity(content.count + addedCount)
    for item in items {
      switch item {
      case let .special(special, typeId):
        ids.append(contentsOf: special)
        typeIds.append(contentsOf: repeatElement(typeId, count: special.count))
      case .sequence(let typeId):
        ids.append(contentsOf: content)
        typeIds.append(contentsOf: repeatElement(typeId, count: content.count))
      }
    }
    return (ids, typeIds)
  }

  /// Reads a `post_processor` section; nil for one that adds no ids (`ByteLevel`).
  static func load(_ node: TokenizerJSONNode) throws -> TokenizerTemplate? {
    let type = try node.typeTag()
    switch type {
    case "ByteLevel": return nil
    case "BertProcessing", "RobertaProcessing":
      func token(_ key: String) throws -> Int {
        let pair = try node.required(key).elements()
        guard pair.count == 2 else { throw node.invalid("\(key) must be [token, id]") }
        let id = try pair[1].int()
        guard id >= 0 else { throw pair[1].invalid("negative token id \(id)") }
        return id
      }
      return TokenizerTemplate(items: [
        .special(ids: [try token("cls")], typeId: 0), .sequence(typeId: 0),
        .special(ids: [try token("sep")], typeId: 0),
      ])
    case "TemplateProcessing":
      let specials = try node.member("special_tokens")
      var items: [Item] = []
      for itemNode in try node.required("single").elements() {
        if let special = try itemNode.member("SpecialToken") {
          let name = try special.string("id")
          guard let entry = try specials?.member(name) else {
            throw special.invalid("special token '\(name)' is not in post_processor.special_tokens")
          }
          let ids = try entry.required("ids").elements().map { try $0.int() }
          guard ids.allSatisfy({ $0 >= 0 }) else { throw entry.invalid("negative token id") }
          items.append(.special(ids: ids, typeId: try special.int("type_id", default: 0)))
        } else if let sequence = try itemNode.member("Sequence") {
          guard try sequence.string("id") == "A" else {
            throw sequence.invalid("a single-sequence template can only refer to sequence A")
          }
          items.append(.sequence(typeId: try sequence.int("type_id", default: 0)))
        } else {
          throw itemNode.unsupported("expected SpecialToken or Sequence")
        }
      }
      return TokenizerTemplate(items: items)
    case "Sequence":
      var found: TokenizerTemplate?
      for part in try node.required("processors").elements() {
        guard let template = try load(part) else { continue }
        guard found == nil else {
          throw part.unsupported("only one post-processor in a Sequence may add special tokens")
        }
        found = template
      }
      return found
    default:
      throw node.unsupported("unsupported post-processor type '\(type)'")
    }
  }
}
