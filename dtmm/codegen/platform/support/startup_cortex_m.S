/*
 * startup_cortex_m.S - vector table, reset handler, fault entry and the two
 * instruction-counting marker functions for dtmm firmware on Cortex-M4/M7/M55.
 *
 * Written in assembly so that nothing before the CPACR write can be compiled
 * into FPU/MVE instructions (GCC 12 auto-vectorises at -O2).
 */
    .syntax unified
    .thumb

/* ---------------------------------------------------------------- vectors */
    .section .vectors, "a", %progbits
    .align 7
    .globl __dtmm_vectors
__dtmm_vectors:
    .word __stack_top
    .word Reset_Handler
    .rept 14                 /* NMI, HardFault, MemManage, BusFault, UsageFault,
                                SecureFault, 4 reserved, SVC, DebugMon, reserved,
                                PendSV, SysTick: all report and exit */
    .word dtmm_fault_entry
    .endr
    .rept 96                 /* external interrupts */
    .word dtmm_fault_entry
    .endr

/* ---------------------------------------------------------------- reset */
    .text
    .align 2
    .globl Reset_Handler
    .type Reset_Handler, %function
    .thumb_func
Reset_Handler:
    ldr   r0, =__stack_top
    msr   msp, r0
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    ldr   r0, =__stack_limit      /* v8-M: stack overflow -> UsageFault (STKOF) */
    msr   msplim, r0
#else
    /* v7-M: no stack limit register, so an MPU region (no access, 1 KiB) guards the
       bottom of the stack; HFNMIENA=0 keeps the MPU off in the HardFault handler. */
    ldr   r0, =0xE000ED98         /* MPU_RNR */
    movs  r1, #0
    str   r1, [r0]
    ldr   r0, =0xE000ED9C         /* MPU_RBAR */
    ldr   r1, =__dtmm_stack_guard
    str   r1, [r0]
    ldr   r0, =0xE000EDA0         /* MPU_RASR: XN, AP=none, SIZE=2^(9+1), ENABLE */
    ldr   r1, =((1 << 28) | (9 << 1) | 1)
    str   r1, [r0]
    ldr   r0, =0xE000ED94         /* MPU_CTRL: PRIVDEFENA | ENABLE */
    movs  r1, #5
    str   r1, [r0]
    dsb
    isb
#endif
    /* VTOR = our table */
    ldr   r0, =0xE000ED08
    ldr   r1, =__dtmm_vectors
    str   r1, [r0]
    /* CPACR: full access to CP10/CP11 (FPU and MVE) before any FP/MVE instruction */
    ldr   r0, =0xE000ED88
    ldr   r1, [r0]
    orr   r1, r1, #(0xF << 20)
    str   r1, [r0]
    dsb
    isb
    /* copy .data from its load address */
    ldr   r0, =_sdata
    ldr   r1, =_edata
    ldr   r2, =_sidata
1:  cmp   r0, r1
    bhs   2f
    ldr   r3, [r2], #4
    str   r3, [r0], #4
    b     1b
2:  /* zero .bss */
    ldr   r0, =_sbss
    ldr   r1, =_ebss
    movs  r3, #0
3:  cmp   r0, r1
    bhs   4f
    str   r3, [r0], #4
    b     3b
4:  /* zero .dtmm_large_bss */
    ldr   r0, =__dtmm_large_bss_start
    ldr   r1, =__dtmm_large_bss_end
5:  cmp   r0, r1
    bhs   6f
    str   r3, [r0], #4
    b     5b
6:  bl    __libc_init_array
    bl    main
    bl    exit
7:  b     7b
    .size Reset_Handler, . - Reset_Handler
    .ltorg

/* ---------------------------------------------------------------- faults */
    .align 2
    .globl dtmm_fault_entry
    .type dtmm_fault_entry, %function
    .thumb_func
dtmm_fault_entry:
    tst   lr, #4
    ite   eq
    mrseq r0, msp
    mrsne r0, psp
    mov   r2, lr                  /* EXC_RETURN */
    ldr   r1, [r0, #24]           /* stacked PC */
    ldr   r3, [r0, #20]           /* stacked LR */
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    movs  r12, #0
    msr   msplim, r12
#endif
    ldr   r12, =__dtmm_fault_stack_top   /* fresh stack: the faulting one may be bad */
    mov   sp, r12
    mov   r0, r1                  /* dtmm_fault_report(pc, lr, exc_return) */
    mov   r1, r3
    bl    dtmm_fault_report
8:  b     8b
    .size dtmm_fault_entry, . - dtmm_fault_entry
    .ltorg

/* ---------------------------------------------------------------- markers
 * The QEMU counting plugin watches the first instruction of these two
 * functions.  One instruction each, so that the count between them is exact
 * and known: see counting notes in platform/qemu.py. */
    .align 2
    .globl dtmm_bench_start
    .type dtmm_bench_start, %function
    .thumb_func
dtmm_bench_start:
    bx    lr
    .size dtmm_bench_start, . - dtmm_bench_start

    .align 2
    .globl dtmm_bench_stop
    .type dtmm_bench_stop, %function
    .thumb_func
dtmm_bench_stop:
    bx    lr
    .size dtmm_bench_stop, . - dtmm_bench_stop

/* ---------------------------------------------------------------- fault stack */
    .section .bss.dtmm_fault_stack, "aw", %nobits
    .align 3
__dtmm_fault_stack:
    .space 1024
    .globl __dtmm_fault_stack_top
__dtmm_fault_stack_top:
