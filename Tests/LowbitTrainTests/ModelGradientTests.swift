import LowbitCore
import LowbitONNX
import LowbitTestSupport
import LowbitTrain
import Testing

/// Forward and backward through the committed Fashion-MNIST ResNet-20 (Conv, BatchNormalization,
/// Relu, residual Add, Identity, GlobalAveragePool, Flatten, Gemm).
@Suite struct ModelGradientTests {
  @Test func resnet20GradientsAreFiniteAndShapedLikeTheParameters() throws {
    let model = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    var trainer = try Trainer(model)
    #expect(trainer.parameterNames.count > 40)
    #expect(trainer.bufferNames.count == 2 * model.nodes.filter { $0.opType == "BatchNormalization" }.count)
    let x = randomTensor([4, 1, 28, 28], seed: 60, in: -1...2)
    let labels = [0, 3, 7, 9]
    let input = model.inputs[0].name, output = model.outputs[0].name
    let tape = try trainer.forward([input: x], mode: .training)
    let loss = try SoftmaxCrossEntropy(logits: tape.value(output)!, labels: labels)
    let gradients = try trainer.backward(tape, outputGradients: [output: loss.gradient])
    #expect(Set(gradients.keys) == Set(trainer.parameterNames))
    var nonzero = 0
    for name in trainer.parameterNames {
      let g = gradients[name]!
      #expect(g.shape == model.initializers[name]!.shape, "\(name)")
      #expect(g.floats.allSatisfy { $0.isFinite }, "\(name)")
      if g.floats.contains(where: { $0 != 0 }) { nonzero += 1 }
    }
    #expect(nonzero == trainer.parameterNames.count)
    // A small step against the gradient lowers the loss of this batch.
    var sgd = SGD(momentum: 0)
    let first = try trainer.step(feeds: [input: x], labels: labels, optimizer: &sgd, learningRate: 0.01)
    let after = try SoftmaxCrossEntropy(logits: trainer.forward([input: x], mode: .training).value(output)!, labels: labels)
    print("resnet20: loss \(first.loss) -> \(after.value) after one SGD step")
    #expect(after.value < first.loss)
  }
}
