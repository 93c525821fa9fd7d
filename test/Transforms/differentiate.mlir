// attn-differentiate: the backward form of a variant. Every differentiated
// op's rule, the chain through several ops, param gradients at the indices
// read (scatter), the lazy scf.if, the sink, and the messages.
// RUN: attn-opt %s --split-input-file --attn-differentiate --verify-diagnostics | FileCheck %s

// + - * / and negation, with a scalar param: t = -(s / temp - s * s).
// CHECK-LABEL: attn.variant @arith
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[T:.+]] = attn.param_get @temp : f32
// CHECK:   %[[D:.+]] = arith.divf %[[S]], %[[T]] : f32
// The negation passes -dt on; d(a - b) sends -(-dt) to s * s.
// CHECK:   %[[G:.+]] = arith.negf %[[DT]] : f32
// CHECK:   %[[GB:.+]] = arith.negf %[[G]] : f32
// d(s * s) = g s + g s
// CHECK:   %[[M1:.+]] = arith.mulf %[[GB]], %[[S]] : f32
// CHECK:   %[[M2:.+]] = arith.mulf %[[GB]], %[[S]] : f32
// CHECK:   %[[SUM:.+]] = arith.addf %[[M1]], %[[M2]] : f32
// d(s / temp) = g / temp to s, -(g (s / temp)) / temp to temp
// CHECK:   %[[DS1:.+]] = arith.divf %[[G]], %[[T]] : f32
// CHECK:   %[[DS:.+]] = arith.addf %[[SUM]], %[[DS1]] : f32
// CHECK:   %[[GR:.+]] = arith.mulf %[[G]], %[[D]] : f32
// CHECK:   %[[GT:.+]] = arith.divf %[[GR]], %[[T]] : f32
// CHECK:   %[[NT:.+]] = arith.negf %[[GT]] : f32
// CHECK:   attn.accumulate_grad %[[NT]] to @temp
// CHECK:   attn.yield %[[DS]] : f32
attn.variant @arith {
  attn.param @temp : f32 = 2.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %t = attn.param_get @temp : f32
    %d = arith.divf %s, %t : f32
    %m = arith.mulf %s, %s : f32
    %a = arith.subf %d, %m : f32
    %n = arith.negf %a : f32
    attn.yield %n : f32
  }
}

// -----

// exp, log, sqrt and tanh, chained: each result is recomputed and reused.
// CHECK-LABEL: attn.variant @math
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[E:.+]] = math.exp %[[S]] : f32
// CHECK:   %[[L:.+]] = math.log %[[E]] : f32
// CHECK:   %[[R:.+]] = math.sqrt %[[L]] : f32
// CHECK:   %[[T:.+]] = math.tanh %[[R]] : f32
// tanh' = 1 - tanh^2
// CHECK:   %[[T2:.+]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK:   %[[OM:.+]] = arith.subf %{{.+}}, %[[T2]] : f32
// CHECK:   %[[G1:.+]] = arith.mulf %[[DT]], %[[OM]] : f32
// sqrt' = 0.5 / sqrt
// CHECK:   %[[H:.+]] = arith.mulf %[[G1]], %{{.+}} : f32
// CHECK:   %[[G2:.+]] = arith.divf %[[H]], %[[R]] : f32
// log' = 1 / x
// CHECK:   %[[G3:.+]] = arith.divf %[[G2]], %[[E]] : f32
// exp' = exp
// CHECK:   %[[G4:.+]] = arith.mulf %[[G3]], %[[E]] : f32
// CHECK:   attn.yield %[[G4]] : f32
attn.variant @math {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %e = math.exp %s : f32
    %l = math.log %e : f32
    %r = math.sqrt %l : f32
    %t = math.tanh %r : f32
    attn.yield %t : f32
  }
}

// -----

// MLIRGen's sigmoid, 1 / (1 + exp(-x)), differentiates as r (1 - r): no
// exp(-x) in the derivative, which would overflow for x < -88.
// CHECK-LABEL: attn.variant @sigmoid
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[R:.+]] = arith.divf %{{.+}}, %{{.+}} : f32
// CHECK:   %[[OM:.+]] = arith.subf %{{.+}}, %[[R]] : f32
// CHECK:   %[[D:.+]] = arith.mulf %[[R]], %[[OM]] : f32
// CHECK:   %[[G:.+]] = arith.mulf %[[DT]], %[[D]] : f32
// CHECK-NOT: math.exp
// CHECK:   attn.yield %[[G]] : f32
attn.variant @sigmoid {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %one = arith.constant 1.0 : f32
    %n = arith.negf %s : f32
    %e = math.exp %n : f32
    %a = arith.addf %one, %e : f32
    %r = arith.divf %one, %a : f32
    attn.yield %r : f32
  }
}

// -----

// max and min send the gradient to the argument that is the result, the
// first one on ties (oge / ole); abs sends sign(x) dt, 0 at 0.
// CHECK-LABEL: attn.variant @max_min_abs
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[P:.+]] = attn.param_get @floor_at : f32
// CHECK:   %[[A:.+]] = math.absf %[[S]] : f32
// CHECK:   %[[MX:.+]] = arith.maximumf %[[A]], %[[P]] : f32
// min(mx, 3.0): mx gets dt where mx <= 3
// CHECK:   %[[LE:.+]] = arith.cmpf ole, %[[MX]], %{{.+}} : f32
// CHECK:   %[[G1:.+]] = arith.select %[[LE]], %[[DT]], %{{.+}} : f32
// max(abs, p): abs where abs >= p, p otherwise
// CHECK:   %[[GE:.+]] = arith.cmpf oge, %[[A]], %[[P]] : f32
// CHECK:   %[[GA:.+]] = arith.select %[[GE]], %[[G1]], %{{.+}} : f32
// CHECK:   %[[GP:.+]] = arith.select %[[GE]], %{{.+}}, %[[G1]] : f32
// abs: sign(s), 0 at 0
// CHECK:   %[[POS:.+]] = arith.cmpf ogt, %[[S]], %{{.+}} : f32
// CHECK:   %[[NEG:.+]] = arith.cmpf olt, %[[S]], %{{.+}} : f32
// CHECK:   %[[N:.+]] = arith.negf %[[GA]] : f32
// CHECK:   %[[IN:.+]] = arith.select %[[NEG]], %[[N]], %{{.+}} : f32
// CHECK:   %[[GS:.+]] = arith.select %[[POS]], %[[GA]], %[[IN]] : f32
// CHECK:   attn.accumulate_grad %[[GP]] to @floor_at
// CHECK:   attn.yield %[[GS]] : f32
attn.variant @max_min_abs {
  attn.param @floor_at : f32 = 0.5
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %c3 = arith.constant 3.0 : f32
    %p = attn.param_get @floor_at : f32
    %a = math.absf %s : f32
    %mx = arith.maximumf %a, %p : f32
    %mn = arith.minimumf %mx, %c3 : f32
    attn.yield %mn : f32
  }
}

// -----

// pow(s, p) with both varying: PyTorch's rules (0 where p == 0; d/dp is 0
// where s == 0 and p >= 0).
// CHECK-LABEL: attn.variant @pow
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[P:.+]] = attn.param_get @p : f32
// CHECK:   %[[R:.+]] = math.powf %[[S]], %[[P]] : f32
// CHECK:   %[[PM1:.+]] = arith.subf %[[P]], %{{.+}} : f32
// CHECK:   %[[PW:.+]] = math.powf %[[S]], %[[PM1]] : f32
// CHECK:   %[[D:.+]] = arith.mulf %[[P]], %[[PW]] : f32
// CHECK:   %[[P0:.+]] = arith.cmpf oeq, %[[P]], %{{.+}} : f32
// CHECK:   %[[DS:.+]] = arith.select %[[P0]], %{{.+}}, %[[D]] : f32
// CHECK:   %[[GS:.+]] = arith.mulf %[[DT]], %[[DS]] : f32
// CHECK:   %[[LOG:.+]] = math.log %[[S]] : f32
// CHECK:   %[[DP:.+]] = arith.mulf %[[R]], %[[LOG]] : f32
// CHECK:   %[[Z:.+]] = arith.andi
// CHECK:   %[[DPS:.+]] = arith.select %[[Z]], %{{.+}}, %[[DP]] : f32
// CHECK:   %[[GP:.+]] = arith.mulf %[[DT]], %[[DPS]] : f32
// CHECK:   attn.accumulate_grad %[[GP]] to @p
// CHECK:   attn.yield %[[GS]] : f32
attn.variant @pow {
  attn.param @p : f32 = 1.5
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %p = attn.param_get @p : f32
    %r = math.powf %s, %p : f32
    attn.yield %r : f32
  }
}

// -----

// select (as the language's ?: without failing sides) follows the chosen
// side; the condition, the indices and casts from integers carry nothing.
// CHECK-LABEL: attn.variant @select
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %[[Q:.+]]: i32, %[[KV:.+]]: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[C:.+]] = arith.cmpf ogt, %[[S]], %{{.+}} : f32
// CHECK:   %[[DIST:.+]] = arith.sitofp %{{.+}} : i32 to f32
// CHECK:   %[[HALF:.+]] = arith.mulf %[[S]], %[[DIST]] : f32
// CHECK:   %[[GT:.+]] = arith.select %[[C]], %[[DT]], %{{.+}} : f32
// CHECK:   %[[GF:.+]] = arith.select %[[C]], %{{.+}}, %[[DT]] : f32
// CHECK:   %[[GH:.+]] = arith.mulf %[[GF]], %[[DIST]] : f32
// CHECK:   %[[SUM:.+]] = arith.addf %[[GT]], %[[GH]] : f32
// CHECK:   attn.yield %[[SUM]] : f32
attn.variant @select {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %z = arith.constant 0.0 : f32
    %c = arith.cmpf ogt, %s, %z : f32
    %d = arith.subi %kv, %q : i32
    %df = arith.sitofp %d : i32 to f32
    %m = arith.mulf %s, %df : f32
    %r = arith.select %c, %s, %m : f32
    attn.yield %r : f32
  }
}

// -----

// Tensor params: the gradient is added at the indices read (a scatter),
// each read separately; a const param has none.
// CHECK-LABEL: attn.variant @scatter
// CHECK: attn.score_grad(%{{.+}}: i32, %[[H:.+]]: i32, %[[Q:.+]]: i32, %[[KV:.+]]: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK-DAG: %[[DIST:.+]] = arith.subi %[[KV]], %[[Q]] : i32
// CHECK-DAG: %[[DF:.+]] = arith.sitofp %[[DIST]] : i32 to f32
// CHECK-DAG: %[[G1:.+]] = arith.mulf %[[DT]], %[[DF]] : f32
// CHECK-DAG: attn.accumulate_grad %[[G1]] to @slopes[%[[H]]]
// CHECK-DAG: attn.accumulate_grad %[[DT]] to @bias[%[[H]], %[[Q]], %[[KV]]]
// CHECK-NOT: to @cap
// CHECK:   attn.yield
attn.variant @scatter {
  attn.param @slopes : f32[H]
  attn.param @bias : f32[H, Lq, Lkv]
  attn.param const @cap : f32 = 2.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %c = attn.param_get @cap : f32
    %sc = arith.mulf %s, %c : f32
    %sl = attn.param_load @slopes[%h] : f32
    %d = arith.subi %kv, %q : i32
    %df = arith.sitofp %d : i32 to f32
    %al = arith.mulf %sl, %df : f32
    %x = attn.param_load @bias[%h, %q, %kv] : f32
    %a = arith.addf %sc, %al : f32
    %r = arith.addf %a, %x : f32
    attn.yield %r : f32
  }
}

// -----

// A lazy scf.if (a guarded read): the derivative is an scf.if on the same
// condition whose branches recompute and differentiate their own side, so
// the read and its gradient happen only where the forward reads.
// CHECK-LABEL: attn.variant @lazy
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %[[KV:.+]]: i32, %[[S:.+]]: f32, %[[DT:.+]]: f32) {
// CHECK:   %[[C:.+]] = arith.cmpi slt, %[[KV]], %{{.+}} : i32
// The primal, recomputed (its result is unused here), then the derivative.
// CHECK:   scf.if %[[C]] -> (f32) {
// CHECK:   %[[G:.+]] = scf.if %[[C]] -> (f32) {
// CHECK:     attn.param_load @t[%[[KV]]] : f32
// CHECK:     attn.accumulate_grad %[[DT]] to @t[%[[KV]]]
// CHECK:     scf.yield %[[DT]] : f32
// CHECK:   } else {
// CHECK:     %[[TW:.+]] = arith.mulf %[[DT]], %{{.+}} : f32
// CHECK:     scf.yield %[[TW]] : f32
// CHECK:   }
// CHECK:   attn.yield %[[G]] : f32
attn.variant @lazy {
  attn.param @n : i32 = 4
  attn.param @t : f32[Lkv]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %two = arith.constant 2.0 : f32
    %n = attn.param_get @n : i32
    %c = arith.cmpi slt, %kv, %n : i32
    %r = scf.if %c -> (f32) {
      %x = attn.param_load @t[%kv] : f32
      %y = arith.addf %s, %x : f32
      scf.yield %y : f32
    } else {
      %y = arith.mulf %s, %two : f32
      scf.yield %y : f32
    }
    attn.yield %r : f32
  }
}

// -----

// The identity score: ds = dt. A sink that reads a tensor param gets
// attn.sink_grad; the mask is not differentiated.
// CHECK-LABEL: attn.variant @sink
// CHECK: attn.score_grad(%{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: f32, %[[DT:.+]]: f32) {
// CHECK-NEXT: attn.yield %[[DT]] : f32
// CHECK: attn.sink_grad(%{{.+}}: i32, %[[H:.+]]: i32, %[[DE:.+]]: f32) {
// CHECK:   %[[G:.+]] = arith.mulf %[[DE]], %{{.+}} : f32
// CHECK:   attn.accumulate_grad %[[G]] to @sinks[%[[H]]]
// CHECK:   attn.yield{{$}}
attn.variant @sink {
  attn.param @sinks : f32[H]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %m = arith.cmpi sle, %kv, %q : i32
    attn.yield %m : i1
  }
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %half = arith.constant 0.5 : f32
    %e = attn.param_load @sinks[%h] : f32
    %r = arith.mulf %e, %half : f32
    attn.yield %r : f32
  }
}

// -----

// A constant sink carries no gradient: no attn.sink_grad, and without a
// score no attn.score_grad either.
// CHECK-LABEL: attn.variant @const_sink
// CHECK-NOT: attn.score_grad
// CHECK-NOT: attn.sink_grad
// CHECK: }
attn.variant @const_sink {
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %z = arith.constant 0.0 : f32
    attn.yield %z : f32
  }
}

// -----

// Params whose gradient is zero are said so, not errors: read only by the
// mask, or only through floor and comparisons.
// CHECK-LABEL: attn.variant @zero_grads
// CHECK: attn.score_grad
// CHECK-NOT: attn.accumulate_grad
// CHECK: attn.yield
attn.variant @zero_grads {
  // expected-warning @+1 {{the gradient of param 'thr' of variant 'zero_grads' is zero: only the mask reads it, and masks are not differentiated}}
  attn.param @thr : f32 = 1.0
  // expected-warning @+1 {{the gradient of param 'step' of variant 'zero_grads' is zero: the score reads it only through operations without a derivative (comparisons, floor, ceil, integer casts)}}
  attn.param @step : f32 = 2.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %st = attn.param_get @step : f32
    %f = math.floor %st : f32
    %r = arith.addf %s, %f : f32
    attn.yield %r : f32
  }
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %k = arith.sitofp %kv : i32 to f32
    %t = attn.param_get @thr : f32
    %m = arith.cmpf olt, %k, %t : f32
    attn.yield %m : i1
  }
}

// -----

// An op without a derivative rule on the path from the score is an error
// at the op.
attn.variant @no_rule {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{cannot differentiate 'math.sin' in the score of variant 'no_rule'}}
    %r = math.sin %s : f32
    attn.yield %r : f32
  }
}

// -----

// Already in backward form: left alone (the pass is idempotent).
// CHECK-LABEL: attn.variant @done
// CHECK-COUNT-1: attn.score_grad
// CHECK-NOT: attn.score_grad
attn.variant @done {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    attn.yield %dt : f32
  }
}
