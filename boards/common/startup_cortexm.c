/* Cortex-M startup shared by all target boards: vector table, reset, SysTick, HardFault.
 * Board specifics come from -D defines (see the board JSON): LEGO_CLOCK_HZ, LEGO_IRQ_COUNT. */
#include <stdint.h>
#include "lego_board.h"

#ifndef LEGO_CLOCK_HZ
#error "LEGO_CLOCK_HZ must be defined by the board (core clock the firmware runs at)"
#endif
#ifndef LEGO_IRQ_COUNT
#error "LEGO_IRQ_COUNT must be defined by the board (number of external interrupts)"
#endif

#define REG32(addr) (*(volatile uint32_t *)(addr))
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define SCB_BFAR REG32(0xE000ED38u)
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)

/* Symbols defined by the linker scripts in boards/ld/. */
extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);
void lego_hardfault_report(const uint32_t *frame);

/* Core exceptions a board may override; unhandled ones land in Default_Handler. */
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*lego_vector_t)(void);

/* The first word is the initial stack pointer, not a handler; the cast is the usual idiom. */
__attribute__((section(".isr_vector"), used))
const lego_vector_t lego_vector_table[16 + LEGO_IRQ_COUNT] = {
    [0] = (lego_vector_t)&_estack,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    [16 ... 16 + LEGO_IRQ_COUNT - 1] = Default_Handler,
};

static volatile uint32_t lego_ticks_ms;

void Reset_Handler(void)
{
    /* volatile pointers keep GCC from turning these loops into memcpy/memset calls
     * that would run before the C environment exists. */
    const uint32_t *src = &_sidata;
    for (volatile uint32_t *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (volatile uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    /* Some parts (STM32H7) boot with VTOR pointing elsewhere; point it at our table. */
    SCB_VTOR = (uint32_t)(uintptr_t)lego_vector_table;
#ifdef __ARM_FP
    /* Full access to CP10/CP11; without it the first float instruction takes a NOCP fault. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    lego_board_exit(main());
}

void Default_Handler(void)
{
    static const char msg[] = "\nlego2c: unexpected interrupt\n";
    lego_console_write(msg, sizeof msg - 1u);
    lego_board_exit(LEGO_EXIT_FAULT);
}

void SysTick_Handler(void)
{
    lego_ticks_ms++;
}

uint32_t lego_board_millis(void)
{
    return lego_ticks_ms;
}

/* Boards with a clock tree to set up (PLL, flash wait states, caches) add a common/clock_*.c
 * that overrides this no-op; the others run from their reset clock. */
__attribute__((weak)) void lego_clock_init(void)
{
}

void lego_board_init(void)
{
    lego_clock_init();
    lego_console_init();
    /* Processor clock as SysTick source, interrupt every millisecond. */
    SYST_RVR = LEGO_CLOCK_HZ / 1000u - 1u;
    SYST_CVR = 0u;
    SYST_CSR = 0x7u;
}

/* Picks the stack the fault frame was pushed on (EXC_RETURN bit 2) and passes it to C.
 * Thumb-1 only, so the same code serves ARMv6-M and ARMv7-M. */
__attribute__((naked)) void HardFault_Handler(void)
{
    __asm__ volatile(
        "movs r0, #4\n\t"
        "mov r1, lr\n\t"
        "tst r0, r1\n\t"
        "beq 1f\n\t"
        "mrs r0, psp\n\t"
        "b 2f\n"
        "1:\n\t"
        "mrs r0, msp\n"
        "2:\n\t"
        "ldr r2, =lego_hardfault_report\n\t"
        "bx r2\n\t"
        ".ltorg\n");
}

static void write_hex(const char *label, uint32_t value)
{
    char buf[20];
    unsigned n = 0;
    while (label[n] != '\0') {
        buf[n] = label[n];
        n++;
    }
    buf[n++] = '0';
    buf[n++] = 'x';
    for (int shift = 28; shift >= 0; shift -= 4) {
        buf[n++] = "0123456789abcdef"[(value >> shift) & 0xFu];
    }
    lego_console_write(buf, n);
}

__attribute__((used)) void lego_hardfault_report(const uint32_t *frame)
{
    static const char head[] = "\nlego2c: HardFault";
    lego_console_write(head, sizeof head - 1u);
    /* Stacked frame: r0 r1 r2 r3 r12 lr pc xpsr. */
    write_hex(" pc=", frame[6]);
    write_hex(" lr=", frame[5]);
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    /* Fault status registers exist from ARMv7-M on. */
    write_hex(" cfsr=", SCB_CFSR);
    write_hex(" hfsr=", SCB_HFSR);
    write_hex(" bfar=", SCB_BFAR);
#endif
    lego_console_write("\n", 1u);
    lego_board_exit(LEGO_EXIT_FAULT);
}
