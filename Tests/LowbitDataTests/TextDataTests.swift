import Foundation
import LowbitCore
import Testing

@testable import LowbitData

@Suite struct TextDataTests {
  static func file(_ bytes: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "lowbit-text-\(UUID().uuidString).txt"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// Lines split at LF with a CR before it dropped; blank lines are no examples but count for
  /// line numbers; a last line without a break is an example.
  @Test func indexesExampleLines() throws {
    let path = try Self.file(Array("one\r\n\n  \t\ntwo words\nthree".utf8))
    let lines = try TextLines.index(path)
    #expect(lines.numbers == [1, 4, 5])
    #expect(try lines.texts(0..<3) == ["one", "two words", "three"])
    #expect(try lines.prefix(1).texts(0..<1) == ["one"])
  }

  @Test func namesTheLineThatIsNotUTF8() throws {
    let path = try Self.file(Array("fine\n".utf8) + [0xFF, 0xFE, 0x0A])
    let lines = try TextLines.index(path)
    #expect(throws: LowbitError.invalidInput("\(path):2: not UTF-8 text")) { try lines.texts(0..<2) }
    let (kept, skipped) = try lines.readable()
    #expect(kept.lines.count == 1 && skipped.count == 1)
  }

  /// A tiny uncased WordPiece tokenizer: normalization, punctuation split, sub-words, unknown
  /// words, special tokens, truncation and padding.
  @Test func encodesWithATinyWordPiece() throws {
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "play", "##ing", "!"]
    let json = """
      {"model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
       "max_input_chars_per_word": 100, "vocab": {\(vocab.enumerated().map { "\"\($1)\": \($0)" }.joined(separator: ", "))}},
       "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
       "pre_tokenizer": {"type": "BertPreTokenizer"},
       "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
       "added_tokens": [{"id": 0, "content": "[PAD]", "special": true}]}
      """
    let t = try Tokenizer(json: Array(json.utf8), name: "tiny.json")
    // Lowercasing strips accents when strip_accents is null: "wörld" is "world".
    #expect(t.encode("Hello, PLAYING wörld!") == [2, 4, 1, 6, 7, 5, 8, 3])
    let e = t.encode("hello world", maxLength: 6)
    #expect(e.ids == [2, 4, 5, 3, 0, 0] && e.attentionMask == [1, 1, 1, 1, 0, 0] && e.typeIds == [0, 0, 0, 0, 0, 0])
    #expect(t.encode("hello world hello", maxLength: 4).ids == [2, 4, 5, 3])
    #expect(throws: LowbitError.self) { try Tokenizer(json: Array("{\"model\": {\"type\": \"Unigram\"}}".utf8), name: "u.json") }
    #expect(throws: LowbitError.self) { try Tokenizer(json: Array("{\"model\": ".utf8), name: "cut.json") }
  }
}
