/* STM32F74x/F75x clock tree at full speed, register level (no HAL). Register and bit
 * positions follow RM0385 (RCC, PWR, FLASH chapters); the Cortex-M7 cache maintenance
 * registers follow the ARMv7-M architecture manual.
 *
 *   HSE 25 MHz crystal (X2 on the STM32F746G-DISCO, not bypassed)
 *   PLL: /M=25 -> 1 MHz VCO input, xN=432 -> 432 MHz VCO, /P=2 -> 216 MHz SYSCLK, /Q=9 -> 48 MHz
 *   AHB /1 = 216 MHz, APB1 /4 = 54 MHz, APB2 /2 = 108 MHz (USART1 is clocked from APB2)
 *   Voltage scale 1 + over-drive (required above 180 MHz), flash 7 wait states, ART + prefetch
 *   Cortex-M7 L1 instruction and data caches on
 *
 * The board JSON's clock_hz (LEGO_CLOCK_HZ, used for SysTick) and LEGO_USART_CLOCK_HZ must
 * match; the #if checks below turn a mismatch into a build error rather than a wrong baud. */
#include <stdint.h>
#include "lego_board.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define HSE_HZ 25000000u
#define PLL_M 25u
#define PLL_N 432u
#define PLL_P 2u
#define PLL_Q 9u
#define SYSCLK_HZ (HSE_HZ / PLL_M * PLL_N / PLL_P)
#define FLASH_WAIT_STATES 7u /* RM0385 table 5: 210 < HCLK <= 216 MHz at 2.7-3.6 V */

#if SYSCLK_HZ != LEGO_CLOCK_HZ
#error "clock_hz in the board JSON does not match the PLL set up in clock_stm32f7.c"
#endif
#if defined(LEGO_USART_CLOCK_HZ) && LEGO_USART_CLOCK_HZ != SYSCLK_HZ / 2u
#error "LEGO_USART_CLOCK_HZ must be the APB2 clock (SYSCLK / 2) that USART1 runs from"
#endif

#define RCC_CR REG32(0x40023800u)
#define RCC_PLLCFGR REG32(0x40023804u)
#define RCC_CFGR REG32(0x40023808u)
#define RCC_APB1ENR REG32(0x40023840u)
#define PWR_CR1 REG32(0x40007000u)
#define PWR_CSR1 REG32(0x40007004u)
#define FLASH_ACR REG32(0x40023C00u)

#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
/* PLLCFGR fields: M[5:0], N[14:6], P[17:16] (0 means /2), SRC[22], Q[27:24]. The other bits
 * are reserved and keep their reset value. */
#define RCC_PLLCFGR_FIELDS (0x3Fu | (0x1FFu << 6) | (0x3u << 16) | (1u << 22) | (0xFu << 24))
#define RCC_PLLCFGR_VALUE (PLL_M | (PLL_N << 6) | ((PLL_P / 2u - 1u) << 16) | (1u << 22) | (PLL_Q << 24))
/* CFGR: SW[1:0], SWS[3:2], HPRE[7:4] (0 = /1), PPRE1[12:10] (5 = /4), PPRE2[15:13] (4 = /2). */
#define RCC_CFGR_SW_MASK 0x3u
#define RCC_CFGR_SW_PLL 0x2u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x2u << 2)
#define RCC_CFGR_PRESCALER_MASK ((0xFu << 4) | (0x7u << 10) | (0x7u << 13))
#define RCC_CFGR_PRESCALERS ((0x0u << 4) | (0x5u << 10) | (0x4u << 13))
#define RCC_APB1ENR_PWREN (1u << 28)
#define PWR_CR1_VOS_MASK (0x3u << 14)
#define PWR_CR1_VOS_SCALE1 (0x3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)
#define FLASH_ACR_ARTRST (1u << 11)

/* Cortex-M7 system control block: cache control and maintenance. */
#define SCB_CCR REG32(0xE000ED14u)
#define SCB_CCSIDR REG32(0xE000ED80u)
#define SCB_CSSELR REG32(0xE000ED84u)
#define SCB_ICIALLU REG32(0xE000EF50u)
#define SCB_DCISW REG32(0xE000EF60u)
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)

static void barrier(void)
{
    __asm__ volatile("dsb\n\tisb" ::: "memory");
}

static void wait_set(volatile uint32_t *reg, uint32_t bits)
{
    while ((*reg & bits) != bits) {
    }
}

static void enable_caches(void)
{
    /* I-cache: invalidate, then enable. */
    barrier();
    SCB_ICIALLU = 0u;
    barrier();
    SCB_CCR |= SCB_CCR_IC;
    barrier();

    /* D-cache: its contents are undefined after reset, so invalidate every line by set/way
     * (geometry read from CCSIDR of the L1 data cache) before enabling it.
     *
     * Why a write-back D-cache is safe here: the firmware starts no DMA and there is no other
     * bus master, so the CPU is the only reader and writer of SRAM1/SRAM2 and can never see a
     * stale line or leave a dirty one that someone else needs. Peripheral registers
     * (0x40000000 up) are Device memory in the default memory map and are never cached, and
     * DTCM (0x20000000-0x2000FFFF) bypasses the cache. Anything added later that uses DMA
     * (camera, SDRAM frame buffers, DMA-driven UART) must clean/invalidate its buffers or put
     * them in DTCM or in a non-cacheable MPU region. */
    SCB_CSSELR = 0u;
    barrier();
    const uint32_t ccsidr = SCB_CCSIDR;
    const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    const uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    const uint32_t set_shift = (ccsidr & 0x7u) + 4u; /* log2(line size in bytes) */
    /* The way index sits in the top bits: shift = 32 - ceil(log2(ways)); clz(0) is undefined,
     * and a direct-mapped cache has no way bits. */
    const uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t way = 0u; way < ways; way++) {
        for (uint32_t set = 0u; set < sets; set++) {
            SCB_DCISW = (way << way_shift) | (set << set_shift);
        }
    }
    barrier();
    SCB_CCR |= SCB_CCR_DC;
    barrier();
}

void lego_clock_init(void)
{
    /* PWR registers need their bus clock; read back so it is on before the first access. */
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR;
    /* VOS can only be written while the PLL is off (it is, after reset). */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_SCALE1;

    RCC_CR = (RCC_CR & ~RCC_CR_HSEBYP) | RCC_CR_HSEON; /* a crystal, so no bypass */
    wait_set(&RCC_CR, RCC_CR_HSERDY);
    RCC_PLLCFGR = (RCC_PLLCFGR & ~RCC_PLLCFGR_FIELDS) | RCC_PLLCFGR_VALUE;
    RCC_CR |= RCC_CR_PLLON;

    /* RM0385 "entering over-drive mode": while SYSCLK is still HSI, enable the over-drive
     * and then switch the regulator to it. No peripheral clocks are on yet, as it requires. */
    PWR_CR1 |= PWR_CR1_ODEN;
    wait_set(&PWR_CSR1, PWR_CSR1_ODRDY);
    PWR_CR1 |= PWR_CR1_ODSWEN;
    wait_set(&PWR_CSR1, PWR_CSR1_ODSWRDY);

    /* More wait states before the clock goes up; read back until the new latency is in
     * effect. The ART accelerator (reset while disabled) and prefetch serve flash fetches over
     * the ITCM interface; fetches at 0x08000000 (AXIM, where we link) go through the L1 caches. */
    FLASH_ACR = FLASH_ACR_ARTRST;
    FLASH_ACR = 0u;
    FLASH_ACR = FLASH_WAIT_STATES | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_WAIT_STATES) {
    }

    /* Bus prescalers first, so APB1 (max 54 MHz) and APB2 (max 108 MHz) never run too fast. */
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_PRESCALER_MASK) | RCC_CFGR_PRESCALERS;
    wait_set(&RCC_CR, RCC_CR_PLLRDY);
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }

    enable_caches();
}
