/* dist.c — the MPI layer: start-up, the fixed-order sums (a ring all-reduce) data-parallel training uses, messages
 * for parallel tuning, and the trainer's reduction hook. The only file that includes mpi.h;
 * built without PL_MPI (no MPI found) it is the one-process version of the same API.
 *
 * Owner: dist. Contract and the reasoning behind the summation order: include/peftlua/dist.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peftlua/alloc.h"
#include "peftlua/dist.h"
#include "peftlua/lora.h"
#include "peftlua/train.h"
#include "train_internal.h"

#ifdef PL_MPI
#include <mpi.h>
#endif

/* user message tags are 0..PL_DIST_TAG_MAX-1; the sums use one above */
#define PL_DIST_TAG_MAX 30000

/* Process-wide by nature: MPI itself is initialised once per process. */
static struct {
    int init, active, rank, size, local_rank, local_size;
    struct pl_dist_stats st;
} D = { 0, 0, 0, 1, 0, 1, { 0, 0, 0, 0.0 } };

int pl_dist_compiled(void)
{
#ifdef PL_MPI
    return 1;
#else
    return 0;
#endif
}

static int env_set(const char *n)
{
    const char *v = getenv(n);
    return v && *v;
}

const char *pl_dist_launcher(void)
{
    if (env_set("OMPI_COMM_WORLD_SIZE")) return "mpirun";
    if ((env_set("PMI_SIZE") || env_set("PMIX_RANK")) && env_set("SLURM_PROCID")) return "srun";
    if (env_set("PMI_SIZE") || env_set("PMIX_RANK")) return "pmi";
    return "";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#ifdef PL_MPI
static enum pl_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return pl_fail(PL_ERR_IO, "dist: %s failed on rank %d of %d: %s", what, D.rank, D.size, msg);
}
#define MPI_TRY(call, what) do { int rc_ = (call); if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what); } while (0)
#endif

enum pl_status pl_dist_init(void)
{
    if (D.init) return PL_OK;
    D.init = 1;
#ifdef PL_MPI
    if (!*pl_dist_launcher()) return PL_OK;   /* no launcher: one process, no MPI_Init */
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return pl_fail(PL_ERR_IO, "dist: MPI_Init_thread failed (launcher %s)", pl_dist_launcher());
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &D.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &D.size);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, D.rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &D.local_rank);
        MPI_Comm_size(node, &D.local_size);
        MPI_Comm_free(&node);
    }
    D.active = 1;
#endif
    return PL_OK;
}

int pl_dist_active(void) { return D.active; }
int pl_dist_rank(void) { return D.rank; }
int pl_dist_size(void) { return D.size; }
int pl_dist_local_rank(void) { return D.local_rank; }
int pl_dist_local_size(void) { return D.local_size; }

void pl_dist_finish(int ok)
{
#ifdef PL_MPI
    if (!D.active) return;
    D.active = 0;
    if (ok) MPI_Finalize();
    else MPI_Abort(MPI_COMM_WORLD, 1);
#else
    (void)ok;
#endif
}

void pl_dist_get_stats(struct pl_dist_stats *s) { *s = D.st; }
void pl_dist_reset_stats(void) { memset(&D.st, 0, sizeof D.st); }

#ifdef PL_MPI
enum { TAG_SUM = 32000 };
#define CHUNK_BYTES ((int64_t)4 << 20)

/* Chunked broadcast (MPI counts are ints). */
static enum pl_status bcast_bytes(void *buf, size_t n, int root)
{
    char *p = buf;
    for (size_t off = 0; off < n;) {
        size_t c = n - off < (size_t)1 << 30 ? n - off : (size_t)1 << 30;
        MPI_TRY(MPI_Bcast(p + off, (int)c, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
        off += c;
    }
    if (D.rank == root) D.st.bytes_sent += (int64_t)n * (D.size - 1);
    else D.st.bytes_recv += (int64_t)n;
    return PL_OK;
}

static void add_into(void *dst, const void *src, int64_t n, int f64)
{
    if (f64) {
        double *a = dst;
        const double *b = src;
        for (int64_t i = 0; i < n; i++) a[i] += b[i];
    } else {
        float *a = dst;
        const float *b = src;
        for (int64_t i = 0; i < n; i++) a[i] += b[i];
    }
}

/* Ring all-reduce with a fixed association (see dist.h): the vector goes in blocks of
 * N segments of at most CHUNK_BYTES; reduce-scatter — in round s rank r sends its running sum
 * of segment (r − s) mod N to r + 1 and adds what r − 1 sends of segment (r − s − 1) mod N —
 * leaves rank r with segment (r + 1) mod N complete, summed as
 *     x_{k+N-1} + (… + (x_{k+1} + x_k))      for segment k (ranks mod N);
 * then an all-gather passes the complete segments around the ring (copies). The order of
 * every addition is a function of N and the segment only, never of message timing. */
static enum pl_status ring_sum(void *buf, int64_t n, int f64)
{
    const int N = D.size, r = D.rank, right = (r + 1) % N, left = (r + N - 1) % N;
    const size_t es = f64 ? sizeof(double) : sizeof(float);
    const MPI_Datatype dt = f64 ? MPI_DOUBLE : MPI_FLOAT;
    const int64_t seg_max = CHUNK_BYTES / (int64_t)es;
    const int64_t block = seg_max * N;
    const int64_t first = n < block ? (n + N - 1) / N : seg_max;   /* the largest segment */
    char *tmp = pl_alloc((size_t)(first > 0 ? first : 1) * es, PL_MEM_WORKSPACE);
    if (!tmp) return pl_fail(PL_ERR_NOMEM, "dist: out of memory for a %.1f MiB reduction buffer",
                             (double)first * (double)es / 1048576.0);
    char *base = buf;
    enum pl_status st = PL_OK;
    for (int64_t b0 = 0; b0 < n && st == PL_OK; b0 += block) {
        const int64_t len = n - b0 < block ? n - b0 : block;
        /* segment k of this block: [b0 + k·len/N, b0 + (k+1)·len/N) */
#define SEG_OFF(k) (b0 + (int64_t)(k) * len / N)
#define SEG_LEN(k) (SEG_OFF((k) + 1) - SEG_OFF(k))
        for (int s = 0; s < N - 1 && st == PL_OK; s++) {
            const int ks = ((r - s) % N + N) % N, kr = ((r - s - 1) % N + N) % N;
            int rc = MPI_Sendrecv(base + (size_t)SEG_OFF(ks) * es, (int)SEG_LEN(ks), dt, right, TAG_SUM,
                                  tmp, (int)SEG_LEN(kr), dt, left, TAG_SUM, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) { st = mpi_fail(rc, "MPI_Sendrecv (reduce-scatter)"); break; }
            D.st.bytes_sent += SEG_LEN(ks) * (int64_t)es;
            D.st.bytes_recv += SEG_LEN(kr) * (int64_t)es;
            add_into(base + (size_t)SEG_OFF(kr) * es, tmp, SEG_LEN(kr), f64);
        }
        for (int s = 0; s < N - 1 && st == PL_OK; s++) {
            const int ks = ((r + 1 - s) % N + N) % N, kr = ((r - s) % N + N) % N;
            int rc = MPI_Sendrecv(base + (size_t)SEG_OFF(ks) * es, (int)SEG_LEN(ks), dt, right, TAG_SUM,
                                  base + (size_t)SEG_OFF(kr) * es, (int)SEG_LEN(kr), dt, left, TAG_SUM,
                                  MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) { st = mpi_fail(rc, "MPI_Sendrecv (all-gather)"); break; }
            D.st.bytes_sent += SEG_LEN(ks) * (int64_t)es;
            D.st.bytes_recv += SEG_LEN(kr) * (int64_t)es;
        }
#undef SEG_OFF
#undef SEG_LEN
    }
    pl_free(tmp);
    return st;
}
#endif

enum pl_status pl_dist_sum_f32(float *buf, int64_t n)
{
#ifdef PL_MPI
    if (D.active && D.size > 1) return ring_sum(buf, n, 0);
#endif
    (void)buf; (void)n;
    return PL_OK;
}

enum pl_status pl_dist_sum_f64(double *buf, int64_t n)
{
#ifdef PL_MPI
    if (D.active && D.size > 1) return ring_sum(buf, n, 1);
#endif
    (void)buf; (void)n;
    return PL_OK;
}

enum pl_status pl_dist_bcast(void *buf, size_t n, int root)
{
    if (root < 0 || root >= D.size) return pl_fail(PL_ERR_ARG, "dist: broadcast from rank %d of %d", root, D.size);
#ifdef PL_MPI
    if (D.active && D.size > 1) return bcast_bytes(buf, n, root);
#endif
    (void)buf; (void)n;
    return PL_OK;
}

enum pl_status pl_dist_barrier(void)
{
#ifdef PL_MPI
    if (D.active && D.size > 1) MPI_TRY(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
    return PL_OK;
}

enum pl_status pl_dist_send(int dest, int tag, const void *buf, size_t n)
{
    if (dest < 0 || dest >= D.size || dest == D.rank)
        return pl_fail(PL_ERR_ARG, "dist: send to rank %d (this is rank %d of %d)", dest, D.rank, D.size);
    if (tag < 0 || tag >= PL_DIST_TAG_MAX)
        return pl_fail(PL_ERR_ARG, "dist: message tag %d must be in 0..%d", tag, PL_DIST_TAG_MAX - 1);
    if (n > (size_t)1 << 30) return pl_fail(PL_ERR_ARG, "dist: message of %zu bytes is over 1 GiB", n);
#ifdef PL_MPI
    if (D.active) {
        MPI_TRY(MPI_Send(buf, (int)n, MPI_BYTE, dest, tag, MPI_COMM_WORLD), "MPI_Send");
        D.st.bytes_sent += (int64_t)n;
        return PL_OK;
    }
#endif
    (void)buf;
    return pl_fail(PL_ERR_STATE, "dist: no other ranks (not started by mpirun/srun or built without MPI)");
}

enum pl_status pl_dist_recv(int src, int tag, double timeout_s, char **buf, size_t *n,
                            int *from, int *tag_out, int *timed_out)
{
    *buf = NULL;
    *n = 0;
    *timed_out = 0;
    if (src < -1 || src >= D.size || src == D.rank)
        return pl_fail(PL_ERR_ARG, "dist: receive from rank %d (this is rank %d of %d)", src, D.rank, D.size);
#ifdef PL_MPI
    if (D.active && D.size > 1) {
        const double t0 = now_s();
        MPI_Status s;
        int flag = 0;
        long nap = 50000;   /* ns: polls back off to 2 ms so a waiting rank costs no core */
        for (;;) {
            MPI_TRY(MPI_Iprobe(src < 0 ? MPI_ANY_SOURCE : src, tag < 0 ? MPI_ANY_TAG : tag,
                               MPI_COMM_WORLD, &flag, &s), "MPI_Iprobe");
            if (flag) break;
            if (timeout_s >= 0 && now_s() - t0 >= timeout_s) { *timed_out = 1; return PL_OK; }
            struct timespec ts = { 0, nap };
            nanosleep(&ts, NULL);
            if (nap < 2000000) nap *= 2;
        }
        int count = 0;
        MPI_Get_count(&s, MPI_BYTE, &count);
        char *b = pl_alloc((size_t)count + 1, PL_MEM_DATA);
        if (!b) return pl_fail(PL_ERR_NOMEM, "dist: out of memory for a %d-byte message", count);
        int rc = MPI_Recv(b, count, MPI_BYTE, s.MPI_SOURCE, s.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) { pl_free(b); return mpi_fail(rc, "MPI_Recv"); }
        b[count] = 0;
        D.st.bytes_recv += count;
        *buf = b;
        *n = (size_t)count;
        if (from) *from = s.MPI_SOURCE;
        if (tag_out) *tag_out = s.MPI_TAG;
        return PL_OK;
    }
#endif
    (void)tag; (void)timeout_s; (void)from; (void)tag_out;
    return pl_fail(PL_ERR_STATE, "dist: no other ranks (not started by mpirun/srun or built without MPI)");
}

/* ---- data-parallel training ---- */

/* Before the optimizer step: [n_params, loss sum, tokens] and the gradient summed over the
 * ranks (ring_sum; the header: gathered at rank 0, summed in rank order). A rank whose trained vector differs in size gets an error on every
 * rank (rank 0 checks; its verdict travels with the sums). */
static enum pl_status trainer_reduce(struct pl_trainer *t)
{
    const double t0 = now_s();
    /* this rank: its parameter count, loss sum, tokens; rank 0 answers with the first rank
       whose count differs from its own (0: none) and that count, and the sums */
    double h[4] = { (double)t->n_params, t->accum_loss, (double)t->accum_tokens, 0 };
    double *all = NULL;
    enum pl_status st = PL_OK;
#ifdef PL_MPI
    if (D.rank == 0) {
        all = pl_alloc(sizeof(double) * 3 * (size_t)D.size, PL_MEM_WORKSPACE);
        if (!all) return pl_fail(PL_ERR_NOMEM, "dist: out of memory");
    }
    int rc = MPI_Gather(h, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { pl_free(all); return mpi_fail(rc, "MPI_Gather"); }
    if (D.rank == 0) {
        D.st.bytes_recv += (int64_t)(D.size - 1) * 3 * 8;
        double v[4] = { 0, 0, 0, 0 };
        for (int r = 0; r < D.size; r++) {   /* rank order */
            if (all[3 * r] != h[0] && v[0] == 0) { v[0] = r; v[1] = all[3 * r]; }
            v[2] += all[3 * r + 1];
            v[3] += all[3 * r + 2];
        }
        memcpy(h, v, sizeof h);
    } else {
        D.st.bytes_sent += 3 * 8;
    }
    pl_free(all);
    if ((st = bcast_bytes(h, sizeof h, 0)) != PL_OK) return st;
    if (h[0] != 0)
        return pl_fail(PL_ERR_STATE, "dist: rank %d trains %.0f parameters, not as many as rank 0: every rank must run the same configuration",
                       (int)h[0], h[1]);
    if ((st = pl_dist_sum_f32(t->grads, t->n_params)) != PL_OK) return st;
    t->accum_loss = h[2];
    t->accum_tokens = (int64_t)h[3];
#else
    (void)h; (void)all;
#endif
    D.st.reductions++;
    D.st.reduce_seconds += now_s() - t0;
    return st;
}

enum pl_status pl_dist_trainer_attach(struct pl_trainer *t)
{
    if (!t) return pl_fail(PL_ERR_ARG, "dist: no trainer");
    t->world = D.size;
    t->rank = D.rank;
    t->reduce = D.size > 1 ? trainer_reduce : NULL;
    return PL_OK;
}
