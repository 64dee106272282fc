/* QEMU TCG plugin: exact count of executed guest instructions, in total and inside windows.
 *
 *   -plugin insn_count.so,start=0x...,stop=0x...,outfile=/path
 *
 * A window opens each time the instruction at `start` executes and closes when the
 * instruction at `stop` executes; the window count is the instructions from `start`
 * (inclusive) to `stop` (exclusive), summed over all closed windows. Every instruction gets an
 * inline counter increment as it is translated, so counting is exact and deterministic
 * (single vCPU, as on the Cortex-M machines). The start/stop callbacks snapshot that counter.
 * Results are written at exit as `key=value` lines: total, window, windows.
 *
 * With `profile=/path`, every translated instruction also gets its own counter and the
 * executed ones are written there as `address count` lines, for a per-function profile. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_v1.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t total;
static uint64_t window_total;
static uint64_t windows;
static uint64_t window_opened_at;
static bool window_open;
static bool have_window;
static uint64_t start_addr;
static uint64_t stop_addr;
static char outfile[4096];
static char profile[4096];

/* One counter per translated instruction; a retranslated address gets another slot, and the
 * slots are summed by address when written. */
typedef struct {
    uint64_t vaddr;
    uint64_t count;
} insn_slot;
typedef struct slot_block {
    struct slot_block *next;
    size_t used;
    insn_slot slots[4096];
} slot_block;
static slot_block *blocks;

static uint64_t *new_slot(uint64_t vaddr)
{
    if (blocks == NULL || blocks->used == sizeof blocks->slots / sizeof blocks->slots[0]) {
        slot_block *b = calloc(1, sizeof *b);
        if (b == NULL) {
            return NULL;
        }
        b->next = blocks;
        blocks = b;
    }
    insn_slot *s = &blocks->slots[blocks->used++];
    s->vaddr = vaddr;
    return &s->count;
}

static void on_start(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    window_opened_at = total;
    window_open = true;
}

static void on_stop(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    if (window_open) {
        window_total += total - window_opened_at;
        windows++;
        window_open = false;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* Whichever order QEMU runs an instruction's callback and its increment in, it is the
         * same at start and at stop, so the difference of the two snapshots is exact. */
        if (have_window) {
            uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
            if (vaddr == start_addr) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
            }
            if (vaddr == stop_addr) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
            }
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &total, 1);
        if (profile[0] != '\0') {
            uint64_t *slot = new_slot(qemu_plugin_insn_vaddr(insn));
            if (slot != NULL) {
                qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, slot, 1);
            }
        }
    }
}

static void write_results(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = outfile[0] != '\0' ? fopen(outfile, "w") : stderr;
    if (f == NULL) {
        return;
    }
    fprintf(f, "total=%" PRIu64 "\nwindow=%" PRIu64 "\nwindows=%" PRIu64 "\n", total, window_total, windows);
    if (f != stderr) {
        fclose(f);
    }
    FILE *p = profile[0] != '\0' ? fopen(profile, "w") : NULL;
    if (p != NULL) {
        for (slot_block *b = blocks; b != NULL; b = b->next) {
            for (size_t i = 0; i < b->used; i++) {
                if (b->slots[i].count != 0) {
                    fprintf(p, "%" PRIx64 " %" PRIu64 "\n", b->slots[i].vaddr, b->slots[i].count);
                }
            }
        }
        fclose(p);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    bool have_start = false;
    bool have_stop = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "start=", 6) == 0) {
            start_addr = strtoull(arg + 6, NULL, 0);
            have_start = true;
        } else if (strncmp(arg, "stop=", 5) == 0) {
            stop_addr = strtoull(arg + 5, NULL, 0);
            have_stop = true;
        } else if (strncmp(arg, "profile=", 8) == 0) {
            snprintf(profile, sizeof profile, "%s", arg + 8);
        } else if (strncmp(arg, "outfile=", 8) == 0) {
            snprintf(outfile, sizeof outfile, "%s", arg + 8);
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s'\n", arg);
            return -1;
        }
    }
    if (have_start != have_stop) {
        fprintf(stderr, "insn_count: give both start= and stop=\n");
        return -1;
    }
    have_window = have_start;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_results, NULL);
    return 0;
}
