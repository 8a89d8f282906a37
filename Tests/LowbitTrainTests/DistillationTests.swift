import Foundation
import LowbitCore
@testable import LowbitTrain
import Testing

/// `DistillationLoss` against its formula: finite differences, the two limits, and KL >= 0.
@Suite struct DistillationTests {
  static let student = Tensor(shape: [3, 4], floats: [0.5, -1, 2, 0.1, 1, 1, 1, 1, -3, 0.2, 0.7, 2.5])
  static let teacher = Tensor(shape: [3, 4], floats: [0.1, -0.5, 2.5, 0, 2, 0, 1, -1, -2, 0.5, 0.1, 3])
  static let labels = [2, 0, 3]

  @Test func gradientMatchesFiniteDifferences() throws {
    for (a, T) in [(Float(1), Float(1)), (0.5, 2), (0.3, 4)] {
      let loss = try DistillationLoss(logits: Self.student, labels: Self.labels, teacher: Self.teacher, weight: a, temperature: T)
      for i in 0..<Self.student.count {
        var plus = Self.student.floats, minus = Self.student.floats
        let h: Float = 1e-2
        plus[i] += h
        minus[i] -= h
        let lp = try DistillationLoss(logits: Tensor(shape: [3, 4], floats: plus), labels: Self.labels, teacher: Self.teacher, weight: a, temperature: T).value
        let lm = try DistillationLoss(logits: Tensor(shape: [3, 4], floats: minus), labels: Self.labels, teacher: Self.teacher, weight: a, temperature: T).value
        let numeric = (lp - lm) / (2 * h)
        let analytic = loss.gradient.floats[i]
        #expect(abs(numeric - analytic) <= 1e-3 * max(1, abs(analytic)) + 2e-4, "a \(a) T \(T) element \(i): \(numeric) vs \(analytic)")
      }
    }
  }

  @Test func limitsAreCrossEntropyAndTeacherMatching() throws {
    let ce = try SoftmaxCrossEntropy(logits: Self.student, labels: Self.labels)
    let none = try DistillationLoss(logits: Self.student, labels: Self.labels, teacher: Self.teacher, weight: 0, temperature: 3)
    #expect(abs(none.value - ce.value) < 1e-6)
    #expect(zip(none.gradient.floats, ce.gradient.floats).allSatisfy { abs($0 - $1) < 1e-7 })
    // A student equal to its teacher has zero KL and zero distillation gradient.
    let same = try DistillationLoss(logits: Self.teacher, labels: Self.labels, teacher: Self.teacher, weight: 1, temperature: 2)
    #expect(abs(same.value) < 1e-6 && same.gradient.floats.allSatisfy { abs($0) < 1e-7 })
    let other = try DistillationLoss(logits: Self.student, labels: Self.labels, teacher: Self.teacher, weight: 1, temperature: 2)
    #expect(other.value > 0)
    #expect(throws: LowbitError.self) {
      try DistillationLoss(logits: Self.student, labels: Self.labels, teacher: Self.teacher, weight: 1.5, temperature: 1)
    }
  }
}
