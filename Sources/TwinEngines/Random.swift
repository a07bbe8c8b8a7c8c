import TwinCore

@inline(__always) func _log(_ x: Double) -> Double { Foundation_log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation_cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Foundation_sin(x) }
@inline(__always) func _exp(_ x: Double) -> Double { Foundation_exp(x) }
@inline(__always) func _pow(_ x: Double, _ y: Double) -> Double { Foundation_pow(x, y) }
