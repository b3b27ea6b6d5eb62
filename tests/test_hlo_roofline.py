"""The per-operation roofline of an HLO module (`videogen.parallel.hlo_roofline`), on
hand-written HLO whose costs are worked out by hand. The compiled-program check
(scanned and unrolled layers give the same FLOPs) is in test_compile.py."""

import pytest

from videogen.parallel import hlo_roofline

PEAK, HBM = 100e12, 1e12  # FLOP/s and bytes/s of an imaginary chip.


def _analyse(text: str, **kwargs) -> hlo_roofline.Roofline:
  return hlo_roofline.analyse(text, peak_flops=PEAK, hbm_bandwidth=HBM, **kwargs)


def test_tiled_layouts_count_their_padding():
  assert hlo_roofline.array_bytes('f32[8,24]{1,0}') == 8 * 24 * 4
  assert hlo_roofline.array_bytes('f32[8,24]{1,0:T(8,128)}') == 8 * 128 * 4
  # Minor-to-major {0,1}: dimension 0 is the lane (128) dimension.
  assert hlo_roofline.array_bytes('bf16[200,3]{0,1:T(8,128)(2,1)}') == 256 * 8 * 2
  assert hlo_roofline.array_bytes('(f32[4]{0}, s32[])') == 4 * 4 + 4


def test_a_while_loop_costs_its_body_times_its_trip_count():
  hlo = """
%fused_dot (p0: f32[64,32], p1: f32[32,16]) -> f32[64,16] {
  %p0 = f32[64,32]{1,0} parameter(0)
  %p1 = f32[32,16]{1,0} parameter(1)
  ROOT %conv = f32[64,16]{1,0} convolution(%p0, %p1), dim_labels=bf_io->bf
}

%body (state: (s32[], f32[64,32], f32[32,16])) -> (s32[], f32[64,32], f32[32,16]) {
  %state = (s32[], f32[64,32]{1,0}, f32[32,16]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %x = f32[64,32]{1,0} get-tuple-element(%state), index=1
  %w = f32[32,16]{1,0} get-tuple-element(%state), index=2
  %y = f32[64,16]{1,0} fusion(%x, %w), kind=kOutput, calls=%fused_dot, metadata={op_name="jit(f)/while/body/jvp(bd,dh->bh)/dot_general"}
  %ar = f32[64,16]{1,0} all-reduce(%y), replica_groups=[1,4]<=[4], to_apply=%add
  ROOT %out = (s32[], f32[64,32]{1,0}, f32[32,16]{1,0}) tuple(%i, %x, %w)
}

%cond (state.1: (s32[], f32[64,32], f32[32,16])) -> pred[] {
  %state.1 = (s32[], f32[64,32]{1,0}, f32[32,16]{1,0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%state.1), index=0
  %n = s32[] constant(7)
  ROOT %lt = pred[] compare(%i.1, %n), direction=LT
}

ENTRY %main (a: f32[64,32], b: f32[32,16]) -> f32[64,32] {
  %a = f32[64,32]{1,0} parameter(0)
  %b = f32[32,16]{1,0} parameter(1)
  %zero = s32[] constant(0)
  %init = (s32[], f32[64,32]{1,0}, f32[32,16]{1,0}) tuple(%zero, %a, %b)
  %loop = (s32[], f32[64,32]{1,0}, f32[32,16]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %res = f32[64,32]{1,0} get-tuple-element(%loop), index=1
}
"""
  roofline = _analyse(hlo)
  flops = 2 * 64 * 16 * 32
  moved = (64 * 32 + 32 * 16 + 64 * 16) * 4
  assert roofline.flops == 7 * flops
  assert roofline.bytes == 7 * moved
  assert roofline.seconds == pytest.approx(7 * max(flops / PEAK, moved / HBM))
  assert roofline.collective_bytes == 7 * 2 * 64 * 16 * 4 * 3 / 4  # Ring all-reduce over 4.
  assert roofline.top[0][0] == 'bd,dh->bh/dot_general'


def test_convolution_counts_only_taps_that_meet_input():
  # A 1-D convolution of 5 positions, kernel 3, padded 1 each side: 5 outputs,
  # 13 of the 15 (output, tap) pairs read input; 2 batch, 4 in, 6 out features.
  hlo = """
ENTRY %main (x: f32[2,5,4], k: f32[3,4,6]) -> f32[2,5,6] {
  %x = f32[2,5,4]{2,1,0} parameter(0)
  %k = f32[3,4,6]{2,1,0} parameter(1)
  ROOT %c = f32[2,5,6]{2,1,0} convolution(%x, %k), window={size=3 pad=1_1}, dim_labels=b0f_0io->b0f
}
"""
  assert _analyse(hlo).flops == 2 * 2 * 6 * 4 * 13


def test_a_fusion_reads_the_slice_of_a_stacked_operand_and_updates_in_place():
  # A scanned layer: reads layer i of a [10,128,128] stack, writes row i of a
  # [10,128,128] carry in place.
  hlo = """
%fused (p0: f32[10,128,128], p1: s32[], p2: f32[10,128,128]) -> f32[10,128,128] {
  %p0 = f32[10,128,128]{2,1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %p2 = f32[10,128,128]{2,1,0} parameter(2)
  %z = s32[] constant(0)
  %ds = f32[1,128,128]{2,1,0} dynamic-slice(%p0, %p1, %z, %z), dynamic_slice_sizes={1,128,128}
  %e = f32[1,128,128]{2,1,0} exponential(%ds)
  ROOT %dus = f32[10,128,128]{2,1,0} dynamic-update-slice(%p2, %e, %p1, %z, %z)
}

ENTRY %main (w: f32[10,128,128], i: s32[], c: f32[10,128,128]) -> f32[10,128,128] {
  %w = f32[10,128,128]{2,1,0} parameter(0)
  %i = s32[] parameter(1)
  %c = f32[10,128,128]{2,1,0} parameter(2)
  ROOT %f = f32[10,128,128]{2,1,0} fusion(%w, %i, %c), kind=kLoop, calls=%fused
}
"""
  layer = 128 * 128 * 4
  assert _analyse(hlo).bytes == layer + 4 + layer  # Slice read, index, row written.


def test_a_slice_taken_inside_a_nested_fusion_reads_the_slice():
  hlo = """
%inner (q0: f32[10,128,128], q1: s32[]) -> f32[1,128,128] {
  %q0 = f32[10,128,128]{2,1,0} parameter(0)
  %q1 = s32[] parameter(1)
  %z = s32[] constant(0)
  ROOT %ds = f32[1,128,128]{2,1,0} dynamic-slice(%q0, %q1, %z, %z), dynamic_slice_sizes={1,128,128}
}

%outer (p0: f32[10,128,128], p1: s32[]) -> f32[1,128,128] {
  %p0 = f32[10,128,128]{2,1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %layer = f32[1,128,128]{2,1,0} fusion(%p0, %p1), kind=kLoop, calls=%inner
  ROOT %e = f32[1,128,128]{2,1,0} exponential(%layer)
}

ENTRY %main (w: f32[10,128,128], i: s32[]) -> f32[1,128,128] {
  %w = f32[10,128,128]{2,1,0} parameter(0)
  %i = s32[] parameter(1)
  ROOT %f = f32[1,128,128]{2,1,0} fusion(%w, %i), kind=kLoop, calls=%outer
}
"""
  layer = 128 * 128 * 4
  assert _analyse(hlo).bytes == layer + 4 + layer


def test_splash_kernels_count_their_matmuls_at_the_causal_block_density():
  # Self-attention of 1024 positions in blocks of 256: 10 of 16 blocks computed.
  q = 'f32[2,4,1024,64]{3,2,1,0}'
  hlo = f"""
ENTRY %main (q: {q}, k: {q}, v: {q}) -> {q} {{
  %q = {q} parameter(0)
  %k = {q} parameter(1)
  %v = {q} parameter(2)
  ROOT %splash_mha_fwd.1 = {q} custom-call(%q, %k, %v), custom_call_target="tpu_custom_call", backend_config={{"xprof_metadata":"{{\\"block_q\\": 256}}"}}
}}
"""
  roofline = _analyse(hlo)
  assert roofline.flops == 2 * 2 * 2 * 4 * 1024 * 1024 * 64 * 10 / 16
  assert roofline.kernel_s == roofline.seconds > 0


def test_collectives_by_ring_algorithm_and_across_slices():
  hlo = '\n'.join(
    [
      '%ag = bf16[8,1024]{1,0} all-gather(bf16[2,1024]{1,0} %p), replica_groups=[1,4]<=[4]',
      '%ar = f32[256]{0} all-reduce(f32[256]{0} %g), replica_groups={{0,1},{2,3}}',
      '%rs = f32[64]{0} reduce-scatter(f32[256]{0} %g), replica_groups=[1,4]<=[4]',
    ]
  )
  roofline = _analyse(hlo, slice_of=[0, 0, 1, 1])
  all_gather = 8 * 1024 * 2 * 3 / 4
  all_reduce = 2 * 256 * 4 * 1 / 2
  reduce_scatter = 64 * 4 * 3
  assert roofline.collective_bytes == all_gather + all_reduce + reduce_scatter
  assert roofline.dcn_bytes == all_gather + reduce_scatter  # Groups {0..3} span both slices.


def test_arrays_in_vmem_cost_no_hbm_bytes_and_their_prefetch_counts_once():
  # XLA:TPU's memory space assignment: x is copied into VMEM (S(1)) and w is
  # sliced into it in two halves joined by a ConcatBitcast; the fusions then
  # read VMEM. HBM moves x once, w once, and the result written to HBM.
  w, half = 'bf16[1024,256]{1,0:T(8,128)(2,1)}', 'bf16[512,256]{1,0:T(8,128)(2,1)S(1)}'
  x, x_vmem = 'f32[8,128]{1,0:T(8,128)}', 'f32[8,128]{1,0:T(8,128)S(1)}'
  hlo = f"""
%fused (p0: f32[8,128]) -> f32[8,128] {{
  %p0 = f32[8,128]{{1,0}} parameter(0)
  ROOT %e = f32[8,128]{{1,0}} exponential(%p0)
}}

%fused_w (q0: bf16[1024,256]) -> bf16[1024,256] {{
  %q0 = bf16[1024,256]{{1,0}} parameter(0)
  ROOT %n = bf16[1024,256]{{1,0}} negate(%q0)
}}

ENTRY %main (w: bf16[1024,256], x: f32[8,128]) -> f32[8,128] {{
  %w = {w} parameter(0)
  %x = {x} parameter(1)
  %cs = ({x_vmem}, {x}, u32[]{{:S(2)}}) copy-start(%x)
  %cd = {x_vmem} copy-done(%cs)
  %s0 = (({w}), {half}, s32[]{{:S(2)}}) slice-start(%w), slice={{[0:512], [0:256]}}
  %s1 = (({w}), {half}, s32[]{{:S(2)}}) slice-start(%w), slice={{[512:1024], [0:256]}}
  %d0 = {half} slice-done(%s0)
  %d1 = {half} slice-done(%s1)
  %wv = bf16[1024,256]{{1,0:T(8,128)(2,1)S(1)}} custom-call(%d0, %d1), custom_call_target="ConcatBitcast"
  %nw = bf16[1024,256]{{1,0:T(8,128)(2,1)S(1)}} fusion(%wv), kind=kLoop, calls=%fused_w
  ROOT %y = {x} fusion(%cd), kind=kLoop, calls=%fused
}}
"""
  assert hlo_roofline.array_bytes(half) == 512 * 256 * 2
  assert hlo_roofline.array_bytes(half, hbm_only=True) == 0
  assert _analyse(hlo).bytes == 8 * 128 * 4 + 1024 * 256 * 2 + 8 * 128 * 4
