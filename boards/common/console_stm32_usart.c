/* Polled STM32 USART console, register level (no HAL). Everything board specific is a
 * -D define from the board JSON:
 *   LEGO_USART_BASE, LEGO_USART_CLOCK_HZ, LEGO_CONSOLE_BAUD    peripheral, its kernel clock, baud
 *   LEGO_USART_LEGACY                                          1 = F1/F2/F4 layout (SR/DR), 0 = ISR/TDR layout
 *   LEGO_RCC_GPIO_EN_REG, LEGO_RCC_GPIO_EN_BITS               RCC register + bits enabling the GPIO ports
 *   LEGO_RCC_USART_EN_REG, LEGO_RCC_USART_EN_BITS             RCC register + bits enabling the USART
 *   LEGO_TX_GPIO_BASE, LEGO_TX_PIN, LEGO_RX_GPIO_BASE, LEGO_RX_PIN, LEGO_USART_AF   pin muxing */
#include <stdint.h>
#include "lego_board.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* GPIO register offsets are the same on every STM32 family. */
#define GPIO_MODER(base) REG32((base) + 0x00u)
#define GPIO_AFR(base, pin) REG32((base) + 0x20u + 4u * ((pin) / 8u))

#if LEGO_USART_LEGACY
#define USART_STATUS REG32(LEGO_USART_BASE + 0x00u) /* SR */
#define USART_TXDATA REG32(LEGO_USART_BASE + 0x04u) /* DR */
#define USART_BRR REG32(LEGO_USART_BASE + 0x08u)
#define USART_CR1 REG32(LEGO_USART_BASE + 0x0Cu)
#define USART_CR1_UE (1u << 13)
#else
#define USART_CR1 REG32(LEGO_USART_BASE + 0x00u)
#define USART_BRR REG32(LEGO_USART_BASE + 0x0Cu)
#define USART_STATUS REG32(LEGO_USART_BASE + 0x1Cu) /* ISR */
#define USART_TXDATA REG32(LEGO_USART_BASE + 0x28u) /* TDR */
#define USART_CR1_UE (1u << 0)
#endif
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RE (1u << 2)
#define USART_TXE (1u << 7)
#define USART_TC (1u << 6)

static void pin_to_af(uint32_t gpio, uint32_t pin)
{
    GPIO_MODER(gpio) = (GPIO_MODER(gpio) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    const uint32_t shift = 4u * (pin % 8u);
    GPIO_AFR(gpio, pin) = (GPIO_AFR(gpio, pin) & ~(0xFu << shift)) | ((uint32_t)LEGO_USART_AF << shift);
}

void lego_console_init(void)
{
    REG32(LEGO_RCC_GPIO_EN_REG) |= LEGO_RCC_GPIO_EN_BITS;
    REG32(LEGO_RCC_USART_EN_REG) |= LEGO_RCC_USART_EN_BITS;
    (void)REG32(LEGO_RCC_USART_EN_REG); /* read back: the clock is on before the first access */
    pin_to_af(LEGO_TX_GPIO_BASE, LEGO_TX_PIN);
    pin_to_af(LEGO_RX_GPIO_BASE, LEGO_RX_PIN);
    /* Oversampling by 16: BRR = kernel clock / baud, rounded. */
    USART_BRR = (LEGO_USART_CLOCK_HZ + LEGO_CONSOLE_BAUD / 2u) / LEGO_CONSOLE_BAUD;
    USART_CR1 = USART_CR1_TE | USART_CR1_RE;
    USART_CR1 |= USART_CR1_UE;
}

void lego_console_write(const char *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        while ((USART_STATUS & USART_TXE) == 0u) {
        }
        USART_TXDATA = (uint8_t)s[i];
    }
}

void lego_board_exit(int code)
{
    (void)code;
    /* Let the last byte leave the shift register, then park: there is nothing to return to. */
    while ((USART_STATUS & USART_TC) == 0u) {
    }
    for (;;) {
    }
}
