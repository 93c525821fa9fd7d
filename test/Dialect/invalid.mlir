// Verifier errors of the attn dialect, each naming what is wrong.
// RUN: attn-opt %s --split-input-file --verify-diagnostics --allow-unregistered-dialect

attn.variant @dup {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %t = arith.constant true
    attn.yield %t : i1
  }
  // expected-error @+1 {{'attn.mask' op appears twice in variant 'dup'}}
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %t = arith.constant true
    attn.yield %t : i1
  }
}

// -----

attn.variant @mask_type {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %t = arith.constant 1.0 : f32
    // expected-error @+1 {{the mask must be 'i1', got 'f32'}}
    attn.yield %t : f32
  }
}

// -----

attn.variant @score_args {
  // expected-error @+1 {{'attn.score' op region must take 5 arguments, got 4}}
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %t = arith.constant 1.0 : f32
    attn.yield %t : f32
  }
}

// -----

attn.variant @score_arg_type {
  // expected-error @+1 {{'attn.score' op score argument must be f32, got 'i32'}}
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: i32) {
    %t = arith.constant 1.0 : f32
    attn.yield %t : f32
  }
}

// -----

attn.variant @mask_arg_type {
  // expected-error @+1 {{'attn.mask' op region argument #2 must be i32, got 'f32'}}
  attn.mask(%b: i32, %h: i32, %q: f32, %kv: i32) {
    %t = arith.constant true
    attn.yield %t : i1
  }
}

// -----

attn.variant @unknown_param {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{'attn.param_get' op references @nope, which is not a parameter of the enclosing variant}}
    %x = attn.param_get @nope : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @param_type {
  attn.param @w : i32 = 3
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{'attn.param_get' op result type 'f32' does not match parameter type 'i32'}}
    %x = attn.param_get @w : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @get_tensor {
  attn.param @t : f32[H]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{'attn.param_get' op parameter @t is a tensor; read it with attn.param_load}}
    %x = attn.param_get @t : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @load_rank {
  attn.param @t : f32[H, Lq]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{'attn.param_load' op parameter @t has rank 2 but 1 indices were given}}
    %x = attn.param_load @t[%h] : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @load_scalar {
  attn.param @w : f32 = 1.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    // expected-error @+1 {{'attn.param_load' op parameter @w is a scalar; read it with attn.param_get}}
    %x = attn.param_load @w[%h] : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @const_tensor {
  // expected-error @+1 {{'attn.param' op only scalars can be const}}
  attn.param const @t : f32[H]
}

// -----

attn.variant @const_no_value {
  // expected-error @+1 {{'attn.param' op a const parameter needs a value}}
  attn.param const @c : f32
}

// -----

attn.variant @bad_elem {
  // expected-error @+1 {{'attn.param' op element type must be i1 (bool), i32 or f32, got 'f64'}}
  attn.param @c : f64
}

// -----

attn.variant @zero_dim {
  // expected-error @+1 {{'attn.param' op dimension must be positive, got 0}}
  attn.param @t : f32[0]
}

// -----

attn.variant @bad_dim {
  // expected-error @+1 {{expected a size name (B, H, Hkv, Lq, Lkv, D, Dv), an integer or '?', got 'N'}}
  attn.param @t : f32[N]
}

// -----

attn.variant @sink_sigmoid {
  // expected-error @+1 {{'attn.normalize' op a sink is only allowed with softmax, not sigmoid}}
  attn.normalize sigmoid sink(%b: i32, %h: i32) {
    %z = arith.constant 0.0 : f32
    attn.yield %z : f32
  }
}

// -----

attn.variant @bad_norm {
  // expected-error @+1 {{unknown normalisation 'softmin' (expected softmax, sigmoid, relu or linear)}}
  attn.normalize softmin
}

// -----

attn.variant @stray {
  // expected-error @+1 {{is not allowed in a variant}}
  %c = arith.constant 0 : i32
}

// -----

attn.variant @no_yield {
  // expected-error @+1 {{'attn.mask' op region must end with 'attn.yield'}}
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    %t = arith.constant true
    "test.unregistered_terminator"() : () -> ()
  }
}

// -----

// The scale reads sizes and const params only.
attn.variant @scale_runtime_param {
  attn.param @w : f32 = 1.000000e+00
  attn.scale {
    // expected-error @+1 {{'attn.param_get' op the scale may read sizes and const params only, not the runtime param @w}}
    %x = attn.param_get @w : f32
    attn.yield %x : f32
  }
}

// -----

attn.variant @scale_tensor_param {
  attn.param @t : f32[H]
  attn.scale {
    %c0 = arith.constant 0 : i32
    // expected-error @+1 {{'attn.param_load' op the scale may read sizes and const params only, not the tensor param @t}}
    %x = attn.param_load @t[%c0] : f32
    attn.yield %x : f32
  }
}


// -----

attn.variant @grad_without_score {
  // expected-error @+1 {{'attn.score_grad' op needs an attn.score in variant 'grad_without_score'}}
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    attn.yield %dt : f32
  }
}

// -----

attn.variant @sink_grad_without_sink {
  attn.param @p : f32
  // expected-error @+1 {{'attn.sink_grad' op needs a softmax sink in variant 'sink_grad_without_sink'}}
  attn.sink_grad(%b: i32, %h: i32, %de: f32) {
    attn.accumulate_grad %de to @p
    attn.yield
  }
}

// -----

attn.variant @score_grad_args {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  // expected-error @+1 {{'attn.score_grad' op region must take 6 arguments, got 5}}
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
}

// -----

attn.variant @score_grad_yield {
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    // expected-error @+1 {{'attn.yield' op the score's derivative must yield 'f32'}}
    attn.yield
  }
}

// -----

attn.variant @sink_grad_yield {
  attn.normalize softmax sink(%b: i32, %h: i32) {
    %z = arith.constant 0.0 : f32
    attn.yield %z : f32
  }
  attn.sink_grad(%b: i32, %h: i32, %de: f32) {
    // expected-error @+1 {{'attn.yield' op yields nothing in the sink's derivative}}
    attn.yield %de : f32
  }
}

// -----

attn.variant @item_yield_missing {
  attn.mask(%b: i32, %h: i32, %q: i32, %kv: i32) {
    // expected-error @+1 {{'attn.yield' op must yield the mask}}
    attn.yield
  }
}

// -----

attn.variant @grad_of_int {
  attn.param @w : i32 = 3
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    // expected-error @+1 {{'attn.accumulate_grad' op parameter @w is 'i32': only f32 parameters have gradients}}
    attn.accumulate_grad %dt to @w
    attn.yield %dt : f32
  }
}

// -----

attn.variant @grad_of_const {
  attn.param const @c : f32 = 2.0
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    // expected-error @+1 {{'attn.accumulate_grad' op parameter @c is const: its value is compiled in and has no gradient}}
    attn.accumulate_grad %dt to @c
    attn.yield %dt : f32
  }
}

// -----

attn.variant @grad_rank {
  attn.param @t : f32[H]
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    attn.yield %s : f32
  }
  attn.score_grad(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32, %dt: f32) {
    // expected-error @+1 {{'attn.accumulate_grad' op parameter @t has rank 1 but 0 indices were given}}
    attn.accumulate_grad %dt to @t
    attn.yield %dt : f32
  }
}

// -----

attn.variant @grad_outside {
  attn.param @p : f32
  attn.score(%b: i32, %h: i32, %q: i32, %kv: i32, %s: f32) {
    %z = arith.constant 0.0 : f32
    // expected-error @+1 {{'attn.accumulate_grad' op is only allowed inside attn.score_grad or attn.sink_grad}}
    attn.accumulate_grad %z to @p
    attn.yield %s : f32
  }
}
