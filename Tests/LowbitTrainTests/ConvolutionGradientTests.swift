import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct ConvolutionGradientTests {
  struct Case: CustomTestStringConvertible, Sendable {
    var name: String
    var input: [Int]
    var weight: [Int]
    var attributes: [String: Attribute]
    var bias = true
    var testDescription: String { name }
  }

  static let cases: [Case] = [
    Case(name: "3x3 pad 1", input: [2, 3, 5, 5], weight: [4, 3, 3, 3], attributes: ["pads": .ints([1, 1, 1, 1])]),
    Case(name: "stride 2 pad 1", input: [2, 2, 7, 6], weight: [3, 2, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "strides": .ints([2, 2])]),
    Case(name: "groups 2", input: [2, 4, 5, 5], weight: [6, 2, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(2)]),
    Case(name: "depthwise stride 2", input: [2, 3, 6, 6], weight: [3, 1, 3, 3],
         attributes: ["pads": .ints([1, 1, 1, 1]), "group": .int(3), "strides": .ints([2, 2])]),
    Case(name: "dilation 2", input: [1, 2, 7, 7], weight: [2, 2, 3, 3],
         attributes: ["pads": .ints([2, 2, 2, 2]), "dilations": .ints([2, 2])]),
    Case(name: "batch 1, asymmetric pads, stride (2,1)", input: [1, 2, 6, 5], weight: [3, 2, 2, 3],
         attributes: ["pads": .ints([1, 0, 0, 2]), "strides": .ints([2, 1])]),
    Case(name: "1x1 no bias", input: [2, 4, 3, 3], weight: [5, 4, 1, 1], attributes: [:], bias: false),
    Case(name: "SAME_UPPER stride 2", input: [1, 2, 5, 5], weight: [2, 2, 3, 3],
         attributes: ["auto_pad": .string("SAME_UPPER"), "strides": .ints([2, 2])]),
    Case(name: "1-D", input: [2, 2, 9], weight: [3, 2, 3], attributes: ["pads": .ints([1, 1]), "strides": .ints([2])]),
  ]

  @Test(arguments: cases)
  func convMatchesFiniteDifferences(_ c: Case) throws {
    let x = randomTensor(c.input, seed: 1), w = randomTensor(c.weight, seed: 2), b = randomTensor([c.weight[0]], seed: 3)
    let inputs = c.bias ? [("x", x), ("w", w), ("b", b)] : [("x", x), ("w", w)]
    let g = graph([node("Conv", inputs.map(\.0), c.attributes)], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), label: "Conv \(c.name)")
  }

  @Test func weightsHeldAsInitializersAreParameters() throws {
    let g = graph(
      [node("Conv", ["x", "w", "b"], ["pads": .ints([1, 1, 1, 1])])], inputs: [("x", randomTensor([1, 2, 4, 4], seed: 1))],
      constants: ["w": randomTensor([3, 2, 3, 3], seed: 2), "b": randomTensor([3], seed: 3)])
    let trainer = try Trainer(g)
    #expect(trainer.parameterNames == ["b", "w"])
    try checkGradients(g, feeds: ["x": randomTensor([1, 2, 4, 4], seed: 1)], label: "Conv parameters")
  }
}
