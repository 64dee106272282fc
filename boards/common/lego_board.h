/* Board support API that generated firmware calls. One implementation per board is
 * assembled from the sources in boards/common/ listed in the board JSON ("sources"). */
#ifndef LEGO_BOARD_H
#define LEGO_BOARD_H

#include <stdint.h>

/* Exit code reported after a HardFault (where the board can report one, i.e. under QEMU). */
#define LEGO_EXIT_FAULT 70

void lego_board_init(void);                         /* clocks, console, SysTick */
void lego_console_write(const char *s, unsigned n); /* blocking write */
void lego_board_exit(int code);                     /* QEMU: semihosting exit with code; hardware: loop forever */
uint32_t lego_board_millis(void);                   /* SysTick-based milliseconds */

/* Clocks, flash wait states, caches: common/clock_*.c where the board has one, else a weak
 * no-op in startup_cortexm.c. Called by lego_board_init() before the console. */
void lego_clock_init(void);

/* Implemented by each console source, called by lego_board_init(). */
void lego_console_init(void);

#endif
