/* Console and exit through ARM semihosting (QEMU: -semihosting-config enable=on,target=native).
 * Only for emulators: on real hardware without a debugger the BKPT instruction faults. */
#include <stdint.h>
#include "lego_board.h"

/* Operation numbers from ARM's "Semihosting for AArch32 and AArch64" specification. */
#define SYS_OPEN 0x01u
#define SYS_WRITE 0x05u
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define OPEN_MODE_W 4u /* "w": on the special file ":tt" this is the host's stdout */

static int32_t stdout_handle = -1;

static int32_t semihost_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

void lego_console_init(void)
{
    static const char tt[] = ":tt";
    const uint32_t args[3] = {(uint32_t)(uintptr_t)tt, OPEN_MODE_W, sizeof tt - 1u};
    stdout_handle = semihost_call(SYS_OPEN, args);
}

void lego_console_write(const char *s, unsigned n)
{
    if (stdout_handle < 0) {
        lego_console_init(); /* a fault before lego_board_init() still gets reported */
    }
    const uint32_t args[3] = {(uint32_t)stdout_handle, (uint32_t)(uintptr_t)s, n};
    semihost_call(SYS_WRITE, args);
}

void lego_board_exit(int code)
{
    /* SYS_EXIT_EXTENDED carries the exit code, so QEMU exits with the firmware's code. */
    const uint32_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    for (;;) {
        semihost_call(SYS_EXIT_EXTENDED, args);
    }
}
