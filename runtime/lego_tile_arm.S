/* Cortex-M4F/M7 inner loop of the blocked convolution (runtime/lego_conv.c).
 *
 * void lego_tile4x4_rows(const lego_tile_job_t *job);
 *
 * Applies one 4x4 weight tile (4 output channels x 4 reduction positions) to whole output
 * rows: out[i][pixel] += sum_j tile[i][j] * in_j[pixel * stride]. The tile lives in s16-s31;
 * two output pixels per iteration, each output row pair moved with one VLDM/VSTM (and at
 * stride 1 each input pair too), so 32 multiply-adds cost 46 instructions at stride 1 and 54
 * at stride 2. GCC does not form these multi-register transfers from C. The job layout must
 * match lego_tile_job_t in lego_conv.c. Assembled only for cores with the FPv4/FPv5 unit.
 */
#if defined(__ARM_ARCH_7EM__) && defined(__ARM_FP) && !defined(LEGO_NO_ASM)

    .syntax unified
    .thumb
    .text

    /* job offsets */
    .equ JOB_TILE, 0
    .equ JOB_IN, 4          /* 4 input pointers */
    .equ JOB_OUT, 20        /* 4 output pointers */
    .equ JOB_ROWS, 36
    .equ JOB_PAIRS, 40      /* pixel pairs per row */
    .equ JOB_ODD, 44        /* 1 if a single pixel ends each row */
    .equ JOB_SKIP, 48       /* bytes from the end of one input row to the start of the next */
    .equ JOB_STRIDE, 52     /* 1 or 2 */

    /* 16 multiply-adds of the two pixels in s0-s7 into the 4 output row pairs. */
    .macro FMA_ROWS
    vldmia r4, {s8-s9}
    vfma.f32 s8, s16, s0
    vfma.f32 s9, s16, s1
    vfma.f32 s8, s17, s2
    vfma.f32 s9, s17, s3
    vfma.f32 s8, s18, s4
    vfma.f32 s9, s18, s5
    vfma.f32 s8, s19, s6
    vfma.f32 s9, s19, s7
    vstmia r4!, {s8-s9}
    vldmia r5, {s10-s11}
    vfma.f32 s10, s20, s0
    vfma.f32 s11, s20, s1
    vfma.f32 s10, s21, s2
    vfma.f32 s11, s21, s3
    vfma.f32 s10, s22, s4
    vfma.f32 s11, s22, s5
    vfma.f32 s10, s23, s6
    vfma.f32 s11, s23, s7
    vstmia r5!, {s10-s11}
    vldmia r6, {s12-s13}
    vfma.f32 s12, s24, s0
    vfma.f32 s13, s24, s1
    vfma.f32 s12, s25, s2
    vfma.f32 s13, s25, s3
    vfma.f32 s12, s26, s4
    vfma.f32 s13, s26, s5
    vfma.f32 s12, s27, s6
    vfma.f32 s13, s27, s7
    vstmia r6!, {s12-s13}
    vldmia r7, {s14-s15}
    vfma.f32 s14, s28, s0
    vfma.f32 s15, s28, s1
    vfma.f32 s14, s29, s2
    vfma.f32 s15, s29, s3
    vfma.f32 s14, s30, s4
    vfma.f32 s15, s30, s5
    vfma.f32 s14, s31, s6
    vfma.f32 s15, s31, s7
    vstmia r7!, {s14-s15}
    .endm

    /* One output pixel: inputs in s0, s2, s4, s6. */
    .macro FMA_SINGLE out, acc, w0, w1, w2, w3
    vldr \acc, [\out]
    vfma.f32 \acc, \w0, s0
    vfma.f32 \acc, \w1, s2
    vfma.f32 \acc, \w2, s4
    vfma.f32 \acc, \w3, s6
    vstmia \out!, {\acc}
    .endm

    .global lego_tile4x4_rows
    .type lego_tile4x4_rows, %function
    .thumb_func
lego_tile4x4_rows:
    push {r4-r11, lr}
    vpush {s16-s31}
    ldr r1, [r0, #JOB_TILE]
    vldmia r1, {s16-s31}
    ldr r4, [r0, #JOB_OUT]
    ldr r5, [r0, #JOB_OUT + 4]
    ldr r6, [r0, #JOB_OUT + 8]
    ldr r7, [r0, #JOB_OUT + 12]
    ldr r9, [r0, #JOB_ROWS]
    ldr r10, [r0, #JOB_PAIRS]
    ldr r11, [r0, #JOB_SKIP]
    ldr r12, [r0, #JOB_ODD]
    ldr lr, [r0, #JOB_STRIDE]
    ldr r1, [r0, #JOB_IN + 4]
    ldr r2, [r0, #JOB_IN + 8]
    ldr r3, [r0, #JOB_IN + 12]
    ldr r0, [r0, #JOB_IN]
    cmp r9, #0
    beq .Ldone
.Lrow:
    movs r8, r10
    beq .Lsingle
    cmp lr, #1
    bne .Lpair2
.Lpair1:
    vldmia r0!, {s0-s1}
    vldmia r1!, {s2-s3}
    vldmia r2!, {s4-s5}
    vldmia r3!, {s6-s7}
    FMA_ROWS
    subs r8, r8, #1
    bne .Lpair1
    b .Lsingle
.Lpair2:
    vldr s0, [r0]
    vldr s1, [r0, #8]
    adds r0, r0, #16
    vldr s2, [r1]
    vldr s3, [r1, #8]
    adds r1, r1, #16
    vldr s4, [r2]
    vldr s5, [r2, #8]
    adds r2, r2, #16
    vldr s6, [r3]
    vldr s7, [r3, #8]
    adds r3, r3, #16
    FMA_ROWS
    subs r8, r8, #1
    bne .Lpair2
.Lsingle:
    cmp r12, #0
    beq .Lnext
    vldr s0, [r0]
    vldr s2, [r1]
    vldr s4, [r2]
    vldr s6, [r3]
    add r0, r0, lr, lsl #2
    add r1, r1, lr, lsl #2
    add r2, r2, lr, lsl #2
    add r3, r3, lr, lsl #2
    FMA_SINGLE r4, s8, s16, s17, s18, s19
    FMA_SINGLE r5, s9, s20, s21, s22, s23
    FMA_SINGLE r6, s10, s24, s25, s26, s27
    FMA_SINGLE r7, s11, s28, s29, s30, s31
.Lnext:
    add r0, r0, r11
    add r1, r1, r11
    add r2, r2, r11
    add r3, r3, r11
    subs r9, r9, #1
    bne .Lrow
.Ldone:
    vpop {s16-s31}
    pop {r4-r11, pc}
    .size lego_tile4x4_rows, . - lego_tile4x4_rows

#endif
