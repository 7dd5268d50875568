/* dist.h — running as one of several processes (ranks) over MPI: data-parallel training and
 * parallel tuning trials. Implemented in src/train/dist.c; Lua: src/lua/l_dist.c, lua/peft/dist.lua.
 *
 * MPI is optional at build time (make MPI=1, or found through pkg-config ompi / mpicc).
 * Built without it, or started without a launcher (mpirun, srun), this is one process:
 * rank 0 of 1, every reduction a no-op, and messages to other ranks an error.
 *
 *     pl_dist_init();                       // MPI_Init_thread when launched by mpirun/srun
 *     int r = pl_dist_rank(), n = pl_dist_size();
 *     pl_dist_sum_f32(grads, count);        // the same sum, bit for bit, on every rank
 *     pl_dist_finish(ok);                   // MPI_Finalize, or MPI_Abort when !ok
 *
 * Determinism: MPI_Allreduce may associate the sum in any order (and the order may change
 * with message sizes, the network layout or the library's algorithm choice). pl_dist_sum_*
 * does not use it: it is a ring all-reduce written here, in which segment k of the vector is
 * summed as x_{k+N-1} + (… + (x_{k+1} + x_k)) (ranks mod N) — an order fixed by N and k alone,
 * never by timing — and then copied around the ring. The same N and inputs give the same bits
 * on every rank and every run. Each rank sends and receives 2·(N−1)/N of the vector, the
 * bandwidth-optimal volume; see docs/distributed.md for the cost against compute. With N = 2
 * the result is x_0 + x_1 exactly (IEEE addition commutes).
 *
 * Failures: the communicator's error handler is MPI_ERRORS_RETURN, so a failed call returns a
 * status here instead of killing the job. A process that dies is not detectable by Open MPI 4
 * itself (no ULFM): mpirun ends the whole job, unless started with --enable-recovery, when the
 * others go on. What a rank can detect is silence: pl_dist_recv takes a timeout.
 */
#ifndef PEFTLUA_DIST_H
#define PEFTLUA_DIST_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

struct pl_trainer;

/* 1 when this build has MPI. */
int pl_dist_compiled(void);
/* The launcher seen in the environment ("mpirun" from OMPI_COMM_WORLD_SIZE, "srun" from
 * PMI_SIZE / PMIX_RANK with SLURM_PROCID, "pmi" otherwise, "" when none). */
const char *pl_dist_launcher(void);
/* Initialise MPI (thread level funneled: only the calling thread talks to MPI) when built with
 * it and a launcher started this process; otherwise one process. Idempotent. Also sets the
 * engine's threads to physical cores / ranks on this node unless PEFT_THREADS,
 * OMP_NUM_THREADS or OPENBLAS_NUM_THREADS says otherwise. */
enum pl_status pl_dist_init(void);
/* 1 when MPI was initialised (even with one rank). */
int pl_dist_active(void);
int pl_dist_rank(void);
int pl_dist_size(void);
/* Ranks on this machine and this rank's index among them (1 and 0 without MPI). */
int pl_dist_local_size(void);
int pl_dist_local_rank(void);
/* End: MPI_Finalize when ok, else MPI_Abort(1) — the other ranks may be waiting for this
 * one in a reduction, and only the launcher can stop them. No-op without MPI. */
void pl_dist_finish(int ok);

/* Sum buf[0..n) over all ranks into buf on every rank, in a fixed order (see Determinism). */
enum pl_status pl_dist_sum_f32(float *buf, int64_t n);
enum pl_status pl_dist_sum_f64(double *buf, int64_t n);
/* Copy n bytes from root's buf to every rank's. */
enum pl_status pl_dist_bcast(void *buf, size_t n, int root);
enum pl_status pl_dist_barrier(void);

/* Point-to-point messages of bytes (tuning): send to dest with tag (>= 0). */
enum pl_status pl_dist_send(int dest, int tag, const void *buf, size_t n);
/* Wait up to timeout_s seconds (< 0: forever) for a message from src (-1: any) with tag (-1:
 * any). On arrival *buf (pl_alloc'd, PL_MEM_DATA, NUL-terminated, free with pl_free), *n,
 * *from and *tag_out are set and *timed_out is 0; on timeout *buf is NULL, *timed_out 1. */
enum pl_status pl_dist_recv(int src, int tag, double timeout_s, char **buf, size_t *n,
                            int *from, int *tag_out, int *timed_out);

/* Bytes this rank's calls moved (payload; a broadcast counts (N−1)·n sent at the root and n
 * received elsewhere, whatever tree MPI uses) and the time spent in reductions. */
struct pl_dist_stats {
    int64_t bytes_sent, bytes_recv;
    int64_t reductions;
    double reduce_seconds;
};
void pl_dist_get_stats(struct pl_dist_stats *s);
void pl_dist_reset_stats(void);

/* Data-parallel training: make trainer t one of pl_dist_size() replicas. Each rank runs
 * grad_accum micro-batches per step, scaled 1/(grad_accum · ranks); before the optimizer step
 * the gradients, the loss sums and the token counts are summed over the ranks
 * (pl_dist_sum_*, fixed order), so every rank applies the same update. The ranks must hold the
 * same configuration (a mismatch in trained parameters is reported by every rank). */
enum pl_status pl_dist_trainer_attach(struct pl_trainer *t);

#endif
