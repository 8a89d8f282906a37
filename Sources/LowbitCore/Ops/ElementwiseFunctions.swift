import Glibc

/// The scalar functions behind the elementwise kernels, one small type each so the generic maps
/// in Broadcast.swift are specialized per function (a closure would cost a call per element).
///
/// NaN propagates through every float function; Relu, Clip, Max and Min included.

// MARK: - Families with a float and an integer form

/// A binary function defined on floats and on (wrapping) 64-bit integers.
protocol ArithmeticOp: Sendable {
  func float(_ a: Float, _ b: Float) -> Float
  func int(_ a: Int64, _ b: Int64) -> Int64
}

/// The float form of an `ArithmeticOp`.
struct FloatArithmetic<Op: ArithmeticOp>: BinaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { op.float(a, b) }
}

/// The integer form of an `ArithmeticOp`.
struct IntArithmetic<Op: ArithmeticOp>: BinaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { op.int(a, b) }
}

struct AddOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { a + b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a &+ b }
}

struct SubOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { a - b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a &- b }
}

struct MulOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { a * b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a &* b }
}

/// Integer division truncates toward zero; `Int64.min / -1` wraps; callers reject zero divisors.
struct DivOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { a / b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 {
    b == 0 ? 0 : a.dividedReportingOverflow(by: b).partialValue
  }
}

/// Mod: with `fmod` the sign of the dividend (C fmod), else the sign of the divisor (Python).
struct ModOp: ArithmeticOp {
  let fmod: Bool
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { fmodf(a, b) }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 {
    if b == 0 { return 0 }
    let r = a.remainderReportingOverflow(dividingBy: b).partialValue
    return !fmod && r != 0 && (r < 0) != (b < 0) ? r &+ b : r
  }
}

struct MaxOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { (a > b || a.isNaN) ? a : b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a > b ? a : b }
}

struct MinOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { (a < b || a.isNaN) ? a : b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a < b ? a : b }
}

/// PRelu: `x < 0 ? slope * x : x`.
struct PReluOp: ArithmeticOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Float { a < 0 ? a * b : a }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Int64 { a < 0 ? a &* b : a }
}

/// A comparison defined on floats, integers and (for Equal) bools.
protocol ComparisonOp: Sendable {
  func float(_ a: Float, _ b: Float) -> Bool
  func int(_ a: Int64, _ b: Int64) -> Bool
  func bool(_ a: Bool, _ b: Bool) -> Bool
}

struct FloatComparison<Op: ComparisonOp>: BinaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Bool { op.float(a, b) }
}

struct IntComparison<Op: ComparisonOp>: BinaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Bool { op.int(a, b) }
}

struct BoolComparison<Op: ComparisonOp>: BinaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { op.bool(a, b) }
}

struct EqualOp: ComparisonOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Bool { a == b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Bool { a == b }
  @inline(__always) func bool(_ a: Bool, _ b: Bool) -> Bool { a == b }
}

struct LessOp: ComparisonOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Bool { a < b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Bool { a < b }
  @inline(__always) func bool(_ a: Bool, _ b: Bool) -> Bool { !a && b }
}

struct LessOrEqualOp: ComparisonOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Bool { a <= b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Bool { a <= b }
  @inline(__always) func bool(_ a: Bool, _ b: Bool) -> Bool { !a || b }
}

struct GreaterOp: ComparisonOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Bool { a > b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Bool { a > b }
  @inline(__always) func bool(_ a: Bool, _ b: Bool) -> Bool { a && !b }
}

struct GreaterOrEqualOp: ComparisonOp {
  @inline(__always) func float(_ a: Float, _ b: Float) -> Bool { a >= b }
  @inline(__always) func int(_ a: Int64, _ b: Int64) -> Bool { a >= b }
  @inline(__always) func bool(_ a: Bool, _ b: Bool) -> Bool { a || !b }
}

/// A unary function defined on floats and on (wrapping) integers.
protocol NumericUnaryOp: Sendable {
  func float(_ x: Float) -> Float
  func int(_ x: Int64) -> Int64
}

struct FloatNumeric<Op: NumericUnaryOp>: UnaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ x: Float) -> Float { op.float(x) }
}

struct IntNumeric<Op: NumericUnaryOp>: UnaryElementOp {
  let op: Op
  @inline(__always) func callAsFunction(_ x: Int64) -> Int64 { op.int(x) }
}

struct NegOp: NumericUnaryOp {
  @inline(__always) func float(_ x: Float) -> Float { -x }
  @inline(__always) func int(_ x: Int64) -> Int64 { 0 &- x }
}

struct AbsOp: NumericUnaryOp {
  @inline(__always) func float(_ x: Float) -> Float { Swift.abs(x) }
  @inline(__always) func int(_ x: Int64) -> Int64 { x < 0 ? 0 &- x : x }
}

/// Sign: -1, 0 or 1; NaN stays NaN.
struct SignOp: NumericUnaryOp {
  @inline(__always) func float(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : (x.isNaN ? x : 0)) }
  @inline(__always) func int(_ x: Int64) -> Int64 { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}

/// Relu: `max(x, 0)`, keeping NaN.
struct ReluOp: NumericUnaryOp {
  @inline(__always) func float(_ x: Float) -> Float { x < 0 ? 0 : x }
  @inline(__always) func int(_ x: Int64) -> Int64 { x < 0 ? 0 : x }
}

/// Clip to `[lo, hi]`; with `lo > hi` every value becomes `hi`, as the spec says.
struct ClipOp<T: Comparable & Sendable>: UnaryElementOp {
  let lo: T
  let hi: T
  @inline(__always) func callAsFunction(_ x: T) -> T {
    let y = x < lo ? lo : x
    return y > hi ? hi : y
  }
}

// MARK: - Float functions

/// A function of one float returning a float.
protocol FloatUnaryOp: UnaryElementOp where In == Float, Out == Float {}

struct SqrtOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { sqrtf(x) } }
struct ExpOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { expf(x) } }
struct LogOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { logf(x) } }
struct ReciprocalOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { 1 / x } }
struct TanhOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { tanhf(x) } }
struct ErfOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { erff(x) } }
struct SinOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { sinf(x) } }
struct CosOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { cosf(x) } }
struct FloorOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { x.rounded(.down) } }
struct CeilOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { x.rounded(.up) } }
struct SquareOp: FloatUnaryOp { @inline(__always) func callAsFunction(_ x: Float) -> Float { x * x } }

/// Round half to even (`2.5 -> 2`, `3.5 -> 4`).
struct RoundOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x.rounded(.toNearestOrEven) }
}

/// `x / divisor`.
struct DivideByOp: FloatUnaryOp {
  let divisor: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x / divisor }
}

/// `1 / (1 + e^-x)`, without overflow for large |x|.
struct SigmoidOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
  }
}

struct SoftsignOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x / (1 + Swift.abs(x)) }
}

/// `log(1 + e^x)`, without overflow for large x.
struct SoftplusOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x))
  }
}

/// Mish: `x tanh(softplus(x))`.
struct MishOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x * tanhf(SoftplusOp()(x)) }
}

/// Celu: `max(0, x) + min(0, alpha (e^(x / alpha) - 1))`.
struct CeluOp: FloatUnaryOp {
  let alpha: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x > 0 ? x : alpha * (expf(x / alpha) - 1) }
}

/// ThresholdedRelu: `x > alpha ? x : 0`.
struct ThresholdedReluOp: FloatUnaryOp {
  let alpha: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x > alpha ? x : 0 }
}

struct LeakyReluOp: FloatUnaryOp {
  let alpha: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x < 0 ? alpha * x : x }
}

struct EluOp: FloatUnaryOp {
  let alpha: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float { x < 0 ? alpha * (expf(x) - 1) : x }
}

struct SeluOp: FloatUnaryOp {
  let alpha: Float
  let gamma: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    x <= 0 ? gamma * (alpha * expf(x) - alpha) : gamma * x
  }
}

/// `max(0, min(1, alpha * x + beta))`, keeping NaN.
struct HardSigmoidOp: FloatUnaryOp {
  let alpha: Float
  let beta: Float
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    let y = alpha * x + beta
    return y < 0 ? 0 : (y > 1 ? 1 : y)
  }
}

/// `x * HardSigmoid(x)` with alpha 1/6 and beta 0.5.
struct HardSwishOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    let y = x / 6 + 0.5
    return x * (y < 0 ? 0 : (y > 1 ? 1 : y))
  }
}

/// Gelu: `0.5 x (1 + erf(x / sqrt 2))`.
struct GeluOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    0.5 * x * (1 + erff(x * 0.70710678118654752))
  }
}

/// Gelu with `approximate = "tanh"`: `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
struct GeluTanhOp: FloatUnaryOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Float {
    0.5 * x * (1 + tanhf(0.79788456080286536 * (x + 0.044715 * x * x * x)))
  }
}

// MARK: - Predicates and logic

struct IsNaNOp: UnaryElementOp {
  @inline(__always) func callAsFunction(_ x: Float) -> Bool { x.isNaN }
}

struct IsInfOp: UnaryElementOp {
  let positive: Bool
  let negative: Bool
  @inline(__always) func callAsFunction(_ x: Float) -> Bool {
    x.isInfinite && (x > 0 ? positive : negative)
  }
}

struct NotOp: UnaryElementOp {
  @inline(__always) func callAsFunction(_ x: Bool) -> Bool { !x }
}

struct AndOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a && b }
}

struct OrOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a || b }
}

struct XorOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Bool, _ b: Bool) -> Bool { a != b }
}

/// Where: `condition ? x : y`.
struct SelectOp<T>: TernaryElementOp {
  @inline(__always) func callAsFunction(_ c: Bool, _ x: T, _ y: T) -> T { c ? x : y }
}

// MARK: - Pow

/// Integer power with wrapping; negative exponents give 0 unless |base| is 1 (C-style
/// truncation of the exact reciprocal).
@inline(__always)
func integerPower(_ base: Int64, _ exponent: Int64) -> Int64 {
  if exponent < 0 {
    if base == 1 { return 1 }
    if base == -1 { return exponent & 1 == 0 ? 1 : -1 }
    return 0
  }
  var result: Int64 = 1
  var b = base
  var e = exponent
  while e > 0 {
    if e & 1 == 1 { result = result &* b }
    b = b &* b
    e >>= 1
  }
  return result
}

/// Float to Int64 truncating toward zero, NaN to 0, saturating outside Int64's range.
@inline(__always)
func truncatedInt64(_ x: Double) -> Int64 {
  if x.isNaN { return 0 }
  if x >= 9_223_372_036_854_775_807.0 { return Int64.max }
  if x <= -9_223_372_036_854_775_808.0 { return Int64.min }
  return Int64(x)
}

struct PowFloatOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { powf(a, b) }
}

struct PowFloatIntOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Float, _ b: Int64) -> Float { powf(a, Float(b)) }
}

struct PowIntOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Int64, _ b: Int64) -> Int64 { integerPower(a, b) }
}

struct PowIntFloatOp: BinaryElementOp {
  @inline(__always) func callAsFunction(_ a: Int64, _ b: Float) -> Int64 {
    truncatedInt64(pow(Double(a), Double(b)))
  }
}
