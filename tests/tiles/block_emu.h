/* block_emu.h: one CUDA thread block on the host, for the device tiles (stdlib/tiles) compiled for
 * x86. emu_block_run runs fn(arg) in every one of the block's MLK_BLOCK_THREADS threads, each a
 * coroutine that runs until its next synchronization point (block barrier, warp shuffle or match,
 * mma, mbarrier wait, nanosleep); a seeded scheduler then picks the next thread (at random, or from
 * the first of the warps ranked at random, so that some warps race ahead while others lag), so the
 * warps drift apart as far as the synchronization allows and a missing barrier shows up as a
 * wrong result. A collective completes only when every thread that must take part has arrived at
 * the same one; a barrier some threads never reach, a shuffle the lanes reach at different call
 * sites, an mbarrier that can never complete: each is reported (the run returns nonzero, with a
 * message on stderr). Bulk copies land at random later points, their destination poisoned
 * (0xff bytes) until then. Shared memory is ordinary memory; the tiles' static buffer and the
 * stream's dynamic one (mlk_stream_mem, defined here) keep their contents between runs, as a
 * block's do between the tasks of one launch. */
#ifndef BLOCK_EMU_H
#define BLOCK_EMU_H

#include <stddef.h>
#include <stdint.h>

/* The launch's dynamic shared memory in bytes (what %dynamic_smem_size reads): at most
 * EMU_DYNAMIC_SMEM_MAX. */
#define EMU_DYNAMIC_SMEM_MAX (256 + 5 * 32768)
void emu_set_dynamic_smem(uint32_t bytes);
/* That dynamic shared memory (stdlib/tiles/stream.c's state, mbarriers and ring), for tests to
 * look into between runs. */
extern uint8_t mlk_stream_mem[EMU_DYNAMIC_SMEM_MAX];

/* Runs one block: block index ctaid of nctaid, every thread calling fn(arg). Returns 0, or -1
 * after printing what went wrong (deadlock, divergent collective, bad copy). */
int emu_block_run(void (*fn)(void *), void *arg, uint32_t ctaid, uint32_t nctaid, uint64_t seed);

/* The scheduler steps after which a run fails as a spin that never ends (0: the default, 50
 * million; the longest run of the tests takes ~5 million). */
void emu_set_max_steps(uint64_t steps);

/* Bulk copies still in flight (issued, not landed) after the last run. */
size_t emu_copies_in_flight(void);

/* The L2 prefetches (cp.async.bulk.prefetch.L2) of the runs since the last call, in issue order:
 * up to `max` ranges into src/bytes; returns how many were issued (more than max: some dropped).
 * The log is cleared. */
size_t emu_prefetches(const void **src, uint32_t *bytes, size_t max);

#endif
