/* tp.c: tensor-parallel training glue: the reduce callback the model's shard functions
 * call (an all-reduce over the tp communicator, SUM or MAX, in place) and its byte count;
 * the model side is src/model/stage_tp.c. */
#include <stdint.h>

#include "tp.h"

struct tp {
    fg_comm *comm;
    int size;
    double bytes;
    int *counts, *displs; /* [size] each: the sequence-parallel blocks */
};

static fg_status reduce(void *ctx, float *buf, size_t n, int max)
{
    tp *t = ctx;
    double p = t->size;
    t->bytes += 2 * (p - 1) / p * (double)n * sizeof(float);
    return fg_comm_allreduce(t->comm, buf, n, FG_DT_F32, max ? FG_OP_MAX : FG_OP_SUM);
}

/* Sequence parallelism: reduce-scatter (gather 0) or in-place all-gather (gather 1) of
 * n floats per rank; a ring moves (size - 1) n floats per rank either way, half an
 * all-reduce of the whole, so the count matches the all-reduces they replace. */
static fg_status seq(void *ctx, float *buf, float *out, size_t n, int gather)
{
    tp *t = ctx;
    if (n > (size_t)INT32_MAX)
        return fg_error(FG_ERR_INVALID, "sequence parallel: %zu floats per rank exceed one collective's count", n);
    for (int r = 0; r < t->size; r++) {
        t->counts[r] = (int)n;
        t->displs[r] = r * (int)n;
    }
    t->bytes += (double)(t->size - 1) * (double)n * sizeof(float);
    return gather ? fg_comm_allgather(t->comm, buf, t->counts, t->displs, FG_DT_F32)
                  : fg_comm_reduce_scatter(t->comm, buf, out, t->counts, FG_DT_F32, FG_OP_SUM);
}

tp *tp_new(fg_comm *comm, fg_model *m, int seq_parallel)
{
    tp *t = fg_calloc(1, sizeof *t);
    if (!t) {
        fg_error(FG_ERR_NOMEM, "tensor parallel: out of memory");
        return NULL;
    }
    t->comm = comm;
    t->size = fg_comm_size(comm);
    t->counts = fg_calloc(2 * (size_t)t->size, sizeof(int));
    if (!t->counts) {
        fg_free(t);
        fg_error(FG_ERR_NOMEM, "tensor parallel: out of memory");
        return NULL;
    }
    t->displs = t->counts + t->size;
    if (fg_model_set_tp(m, fg_comm_rank(comm), t->size, reduce, t) != FG_OK ||
        (seq_parallel && fg_model_set_tp_seq(m, seq, seq_parallel == 2) != FG_OK)) {
        fg_model_set_tp(m, 0, 1, NULL, NULL);
        fg_free(t->counts);
        fg_free(t);
        return NULL;
    }
    return t;
}

void tp_delete(tp *t, fg_model *m)
{
    if (!t)
        return;
    if (m)
        fg_model_set_tp(m, 0, 1, NULL, NULL);
    fg_free(t->counts);
    fg_free(t);
}

double tp_bytes(const tp *t)
{
    return t->bytes;
}

int tp_size(const tp *t)
{
    return t->size;
}
