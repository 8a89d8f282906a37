import Foundation
import LowbitCore

/// The model input for one text: token ids, attention mask and token type ids, all of one length.
public struct Encoding: Sendable, Equatable {
  /// Token ids, special tokens included, padding last (or first for left padding).
  public var ids: [Int]
  /// 1 for every real token (special tokens included), 0 for padding.
  public var attentionMask: [Int]
  /// The post-processor's type id for every token, the padding type id (normally 0) for padding.
  public var typeIds: [Int]

  /// An encoding from its three parallel arrays.
  public init(ids: [Int], attentionMask: [Int], typeIds: [Int]) {
    self.ids = ids
    self.attentionMask = attentionMask
    self.typeIds = typeIds
  }
}

/// A Hugging Face `tokenizer.json` tokenizer that turns text into model input ids, matching the
/// `tokenizers` library for the parts it supports:
///
/// - models `WordPiece` and `BPE` (byte-level or not; merges as "a b" strings or ["a", "b"] pairs;
///   `unk_token`, `fuse_unk`, `byte_fallback`, `ignore_merges`, subword prefix and suffix);
/// - normalizers `BertNormalizer`, `Lowercase`, `NFD`, `NFC`, `NFKD`, `NFKC`, `StripAccents`,
///   `Strip`, `Prepend`, `Replace` (literal pattern) and `Sequence`s of them;
/// - pre-tokenizers `BertPreTokenizer`, `ByteLevel` (GPT-2 pattern), `Whitespace`,
///   `WhitespaceSplit`, `Punctuation`, `Digits` and `Sequence`s of them;
/// - post-processors `TemplateProcessing`, `BertProcessing`, `RobertaProcessing`, `ByteLevel`, or none;
/// - `added_tokens`, matched before normalization (or after it, for `"normalized": true` tokens);
/// - the `padding` section's pad id, pad type id and side, and the `truncation` section's side.
///
/// Encoding, in order: the text is cut at added tokens; each remaining piece is normalized, cut at
/// normalized added tokens, split into words by the pre-tokenizer and each word turned into ids by
/// the model; the post-processor's special tokens frame the result.
/// Anything else in the file (another model or component type) is rejected when loading.
/// Single sequences only: no sentence pairs, offsets or decoding. Unicode character classes follow
/// the Unicode versions of the library's own tables (see `TokenizerUnicode`), so that outputs match
/// for every scalar. A copy is cheap and can be used from several threads at once.
public struct Tokenizer: Sendable {
  let model: TokenizerModel
  let normalizer: TokenizerNormalizer?
  let preTokenizer: TokenizerPreTokenizer?
  let rawAddedTokens: AddedTokenSplitter
  let normalizedAddedTokens: AddedTokenSplitter
  let template: TokenizerTemplate
  let padId: Int
  let padTypeId: Int
  let padLeft: Bool
  let truncateLeft: Bool

  /// Reads and parses the tokenizer.json file at `path`; throws `LowbitError.io` when it cannot be
  /// read and the errors of `init(json:name:)` otherwise.
  public init(contentsOf path: String) throws {
    try self.init(json: try FileIO.read(path), name: path)
  }

  /// Parses tokenizer.json content; `name` (usually the path) starts every error message.
  /// Throws `LowbitError.invalidInput` for malformed JSON, wrong member types, bad ids or tokens
  /// missing from the vocabulary, and `LowbitError.unsupported` (naming the JSON path and type) for
  /// a model, normalizer, pre-tokenizer or post-processor this type does not implement.
  public init(json: [UInt8], name: String) throws {
    let root = TokenizerJSONNode(value: try TokenizerJSON.parse(json, name: name), path: "", file: name)
    _ = try root.members()
    model = try TokenizerModel.load(try root.required("model"))
    normalizer = try root.member("normalizer").map { try TokenizerNormalizer.load($0) }
    preTokenizer = try root.member("pre_tokenizer").map { try TokenizerPreTokenizer.load($0) }
    template = try root.member("post_processor").flatMap { try TokenizerTemplate.load($0) } ?? TokenizerTemplate()

    var raw: [AddedTokenSplitter.Pattern] = []
    var normalized: [AddedTokenSplitter.Pattern] = []
    var addedIds: [[UInt8]: Int] = [:]
    for entry in try root.member("added_tokens")?.elements() ?? [] {
      let id = try entry.required("id").int()
      guard id >= 0 else { throw entry.invalid("negative token id \(id)") }
      let content = try entry.string("content")
      guard !content.isEmpty else { throw entry.invalid("empty added token") }
      addedIds[Array(content.utf8)] = id
      let isNormalized = try entry.bool("normalized", default: !(try entry.bool("special", default: false)))
      let scalars = Array(content.unicodeScalars)
      let pattern = AddedTokenSplitter.Pattern(
        scalars: isNormalized ? (normalizer?.apply(scalars) ?? scalars) : scalars, id: id,
        leftStrip: try entry.bool("lstrip", default: false), rightStrip: try entry.bool("rstrip", default: false),
        singleWord: try entry.bool("single_word", default: false))
      if isNormalized { normalized.append(pattern) } else { raw.append(pattern) }
    }
    rawAddedTokens = AddedTokenSplitter(raw)
    normalizedAddedTokens = AddedTokenSplitter(normalized)

    let model = self.model
    func tokenId(_ token: String) -> Int? { addedIds[Array(token.utf8)] ?? model.id(of: token) }
    if let padding = try root.member("padding") {
      padId = try padding.int("pad_id", default: tokenId(try padding.optionalString("pad_token") ?? "[PAD]") ?? 0)
      padTypeId = try padding.int("pad_type_id", default: 0)
      padLeft = try padding.optionalString("direction") == "Left"
    } else {
      padId = tokenId("[PAD]") ?? tokenId("<pad>") ?? 0
      padTypeId = 0
      padLeft = false
    }
    truncateLeft = try root.member("truncation")?.optionalString("direction") == "Left"
  }

  /// The ids of the text between special tokens: normalized, pre-tokenized, run through the model.
  func contentIds(_ text: String) -> [Int] {
    var ids: [Int] = []
    for piece in rawAddedTokens.split(Array(text.unicodeScalars)) {
      switch piece {
      case .token(let id): ids.append(id)
      case .text(let raw):
        let normalizedText = normalizer?.apply(raw) ?? raw
        for part in normalizedAddedTokens.split(normalizedText) {
          switch part {
          case .token(let id): ids.append(id)
          case .text(let text):
            guard !text.isEmpty else { continue }
            if let preTokenizer {
              for word in preTokenizer.words(text) { model.tokenize(word, into: &ids) }
            } else {
              model.tokenize(text, into: &ids)
            }
          }
        }
      }
    }
    return ids
  }

  /// The ids of `text` with the post-processor's special tokens (e.g. `[CLS] … [SEP]`), without
  /// truncation or padding (whatever the file's `truncation`/`padding` sections say).
  public func encode(_ text: String) -> [Int] {
    template.apply(contentIds(text)).ids
  }

  /// The encoding of `text` at exactly `maxLength` tokens (none when `maxLength <= 0`): the text's
  /// own tokens are cut (from the end, or the start for a `"Left"` truncation direction) so that
  /// with the special tokens the total is at most `maxLength`, the special tokens are kept (if they
  /// alone exceed `maxLength` they are cut too, where Hugging Face raises an error), and padding
  /// fills the rest with the pad id (the `padding` section's, else `[PAD]` or `<pad>`, else 0),
  /// attention mask 0 and the pad type id (normally 0).
  public func encode(_ text: String, maxLength: Int) -> Encoding {
    guard maxLength > 0 else { return Encoding(ids: [], attentionMask: [], typeIds: []) }
    var content = contentIds(text)
    let budget = max(0, maxLength - template.addedCount)
    if content.count > budget {
      content = truncateLeft ? Array(content.suffix(budget)) : Array(content.prefix(budget))
    }
    var (ids, typeIds) = template.apply(content)
    if ids.count > maxLength {
      ids.removeLast(ids.count - maxLength)
      typeIds.removeLast(typeIds.count - maxLength)
    }
    var mask = [Int](repeating: 1, count: ids.count)
    let padCount = maxLength - ids.count
    if padCount > 0 {
      let pads = [Int](repeating: padId, count: padCount)
      let zeros = [Int](repeating: 0, count: padCount)
      let padTypes = [Int](repeating: padTypeId, count: padCount)
      if padLeft {
        ids = pads + ids
        mask = zeros + mask
        typeIds = padTypes + typeIds
      } else {
        ids += pads
        mask += zeros
        typeIds += padTypes
      }
    }
    return Encoding(ids: ids, attentionMask: mask, typeIds: typeIds)
  }
}

/// The model section of tokenizer.json.
enum TokenizerModel: Sendable {
  case wordPiece(WordPieceModel)
  case bpe(BPEModel)

  static func load(_ node: TokenizerJSONNode) throws -> TokenizerModel {
    // Older files leave out `type`; BPE is then recognised by its merges, WordPiece by its word limit.
    var type = try node.optionalString("type")
    if type == nil, try node.member("merges") != nil { type = "BPE" }
    if type == nil, try node.member("max_input_chars_per_word") != nil { type = "WordPiece" }
    guard let type else { throw node.unsupported("model without a type that is neither BPE nor WordPiece") }
    switch type {
    case "WordPiece": return .wordPiece(try WordPieceModel(node))
    case "BPE": return .bpe(try BPEModel(node))
    default: throw node.unsupported("unsupported model type '\(type)'")
    }
  }

  /// Appends the ids of one pre-tokenized word.
  func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
    switch self {
    case .wordPiece(let model): model.tokenize(word, into: &ids)
    case .bpe(let model): model.tokenize(word, into: &ids)
    }
  }

  /// The vocabulary id of `token`, if any.
  func id(of token: String) -> Int? {
    switch self {
    case .wordPiece(let model): return model.vocab[Array(token.utf8)]
    case .bpe(let model): return model.vocab[Array(token.utf8)]
    }
  }
}
