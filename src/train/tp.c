/* tp.c: tensor-parallel training glue: the reduce callback the model's shard functions
 * call (an all-reduce over the tp communicator, SUM or MAX, in place) and its byte count;
 * the model side is src/model/stage_tp.c. */
#include "tp.h"

struct tp {
    fg_comm *comm;
    int size;
    double bytes;
};

static fg_status reduce(void *ctx, float *buf, size_t n, int max)
{
    tp *t = ctx;
    double p = t->size;
    t->bytes += 2 * (p - 1) / p * (double)n * sizeof(float);
    return fg_comm_allreduce(t->comm, buf, n, FG_DT_F32, max ? FG_OP_MAX : FG_OP_SUM);
}

tp *tp_new(fg_comm *comm, fg_model *m)
{
    tp *t = fg_calloc(1, sizeof *t);
    if (!t) {
        fg_error(FG_ERR_NOMEM, "tensor parallel: out of memory");
        return NULL;
    }
    t->comm = comm;
    t->size = fg_comm_size(comm);
    if (fg_model_set_tp(m, fg_comm_rank(comm), t->size, reduce, t) != FG_OK) {
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
