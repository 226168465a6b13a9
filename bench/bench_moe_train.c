/* bench_moe_train.c: a small training driver for the MoE experiments (bench/bench_moe.sh):
 * trains one model from a `frugal train` JSON config on the tokens (bytes or a BPE) of a text
 * file with fg_model_* + fg_optim (AdamW, warmup + cosine, clipping, bias update after
 * each step), and writes one JSONL line per step with the router statistics
 * (fg_moe_stats), validation losses without the aux term, and a final summary.
 * It exists because the trainer's metrics.jsonl carries only the summary MoE statistics,
 * not the per-layer, per-expert counts the balance analysis needs; its loop mirrors
 * src/train/train.c (same config fields, same optimiser calls).
 *
 * Usage: bench_moe_train CONFIG.json LOG.jsonl [key=value ...]
 *   keys are `frugal train` config keys (n_expert=64, balance=none, max_steps=300, ...);
 *   data= names the text file, tokenizer= "byte" (default) or a tokenizer.json; the last
 *   10% of the tokens is validation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frugal/kernels.h"
#include "frugal/model.h"
#include "frugal/optim.h"
#include "frugal/tok.h"
#include "frugal/train.h"

/* Process CPU seconds (all threads): with one thread, the figure that stays stable
 * while other jobs share the machine. */
static double cpu_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per MoE layer, this step's most loaded expert and how much of its load one token id
 * carries: [expert, pairs, token id, pairs of that token]. Tokens the router cannot tell
 * apart arrive together; this shows whether an overload is such a cluster. */
static void top_expert_clusters(const fg_model *m, const int32_t *inp, int V, FILE *log)
{
    const fg_model_config *mc = fg_model_get_config(m);
    int E = mc->moe.n_expert;
    int *cnt = fg_calloc((size_t)E, sizeof(int)), *tok = fg_calloc((size_t)V, sizeof(int));
    fprintf(log, ", \"top_cluster\": [");
    for (int l = mc->moe.n_dense_layers, first = 1; l < mc->n_layer; l++, first = 0) {
        int n = 0, k = 0;
        const int32_t *r = fg_model_moe_routes(m, l, &n, &k);
        memset(cnt, 0, (size_t)E * sizeof(int));
        memset(tok, 0, (size_t)V * sizeof(int));
        int top = 0;
        for (int i = 0; r && i < n * k; i++)
            cnt[r[i]]++;
        for (int e = 1; e < E; e++)
            top = cnt[e] > cnt[top] ? e : top;
        int best = 0;
        for (int i = 0; r && i < n * k; i++)
            if (r[i] == top && inp[i / k] >= 0 && inp[i / k] < V && ++tok[inp[i / k]] > tok[best])
                best = inp[i / k];
        fprintf(log, "%s[%d, %d, %d, %d]", first ? "" : ", ", top, cnt[top], best, tok[best]);
    }
    fprintf(log, "]");
    fg_free(cnt);
    fg_free(tok);
}

/* Max/mean load of each MoE layer, over the last step (from the load history ring
 * the bias rule keeps in the flat buffer) and over the whole window of W steps. */
static void layer_loads(fg_model *m, FILE *log)
{
    const fg_model_config *mc = fg_model_get_config(m);
    int E = mc->moe.n_expert, W = mc->moe.balance_window;
    const float *p = fg_model_params(m);
    fprintf(log, ", \"layer_step_max_mean\": [");
    char win[1024];
    int wl = 0;
    win[0] = 0;
    for (int l = mc->moe.n_dense_layers, first = 1; l < mc->n_layer; l++, first = 0) {
        char name[64];
        snprintf(name, sizeof name, "h.%d.moe.load_hist", l);
        const fg_tensor_info *h = fg_model_find_tensor(m, name);
        snprintf(name, sizeof name, "h.%d.moe.load_steps", l);
        const fg_tensor_info *s = fg_model_find_tensor(m, name);
        long steps = (long)p[s->offset];
        int valid = steps < W ? (int)steps : W;
        const float *last = p + h->offset + (size_t)((steps - 1) % W) * E;
        double tot = 0, mx = 0, wtot = 0, wmx = 0;
        for (int e = 0; e < E; e++) {
            double we = 0;
            for (int k = 0; k < valid; k++)
                we += p[h->offset + (size_t)k * E + e];
            tot += last[e], mx = last[e] > mx ? last[e] : mx;
            wtot += we, wmx = we > wmx ? we : wmx;
        }
        fprintf(log, "%s%.4f", first ? "" : ", ", tot > 0 ? mx / (tot / E) : 0.0);
        wl +=
            snprintf(win + wl, sizeof win - (size_t)wl, "%s%.4f", first ? "" : ", ", wtot > 0 ? wmx / (wtot / E) : 0.0);
    }
    fprintf(log, "], \"layer_window_max_mean\": [%s]", win);
    /* this step's routed pairs per expert, per MoE layer (tools/moe_plot.py sums them
     * over rolling windows longer than the balance window) */
    fprintf(log, ", \"counts\": [");
    for (int l = mc->moe.n_dense_layers; l < mc->n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "h.%d.moe.load_hist", l);
        const fg_tensor_info *h = fg_model_find_tensor(m, name);
        snprintf(name, sizeof name, "h.%d.moe.load_steps", l);
        long steps = (long)p[fg_model_find_tensor(m, name)->offset];
        const float *last = p + h->offset + (size_t)((steps - 1) % W) * E;
        fprintf(log, "%s[", l == mc->moe.n_dense_layers ? "" : ", ");
        for (int e = 0; e < E; e++)
            fprintf(log, "%s%.0f", e ? "," : "", last[e]);
        fprintf(log, "]");
    }
    fprintf(log, "]");
}

static void die(const char *what)
{
    fprintf(stderr, "bench_moe_train: %s: %s\n", what, fg_last_error());
    exit(1);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    char *p;
    if (fg_read_file(path, 0, &p, n) != FG_OK) {
        fprintf(stderr, "bench_moe_train: %s\n", fg_last_error());
        exit(1);
    }
    return (uint8_t *)p;
}

/* B windows of T+1 tokens from text[lo, hi): random starts, or evenly spaced ones
 * (validation) when rng is NULL, `which` choosing the batch. */
static void make_batch(const uint32_t *text, size_t lo, size_t hi, int B, int T, fg_rng *rng, int which, int n_batches,
                       int32_t *inp, int32_t *tgt)
{
    size_t span = hi - lo - (size_t)T - 1;
    for (int b = 0; b < B; b++) {
        size_t s = rng ? lo + (size_t)(fg_rng_next(rng) % span)
                       : lo + span * (size_t)(which * B + b) / (size_t)(n_batches * B);
        for (int t = 0; t < T; t++) {
            inp[b * T + t] = (int32_t)text[s + (size_t)t];
            tgt[b * T + t] = (int32_t)text[s + (size_t)t + 1];
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_moe_train CONFIG.json LOG.jsonl [key=value ...]\n");
        return 2;
    }
    fg_train_config c;
    fg_train_config_default(&c);
    if (fg_train_config_load_json(&c, argv[1]) != FG_OK)
        die(argv[1]);
    for (int i = 3; i < argc; i++) {
        char key[128];
        const char *eq = strchr(argv[i], '=');
        if (!eq || (size_t)(eq - argv[i]) >= sizeof key) {
            fprintf(stderr, "bench_moe_train: argument '%s' is not key=value\n", argv[i]);
            return 2;
        }
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = 0;
        if (fg_train_config_set(&c, key, eq + 1, argv[i]) != FG_OK)
            die(argv[i]);
    }
    fg_tokenizer *tok = fg_tok_load(c.tokenizer[0] ? c.tokenizer : "byte");
    if (!tok)
        die("tokenizer");
    c.model.vocab_size = fg_tok_vocab_size(tok);
    if (c.model.max_seq_len == 0)
        c.model.max_seq_len = c.seq_len;
    if (c.threads > 0)
        fg_threads_set(c.threads);
    if (fg_kernels_init(c.kernels[0] ? c.kernels : NULL) != FG_OK)
        die("kernels");
    int B = c.batch_size, T = c.seq_len;
    size_t n_bytes, n_text;
    uint8_t *bytes = read_file(c.data, &n_bytes);
    uint32_t *text;
    if (fg_tok_encode(tok, (const char *)bytes, n_bytes, &text, &n_text) != FG_OK)
        die("encode");
    fg_free(bytes);
    fg_tok_delete(tok);
    size_t split = n_text - n_text / 10;

    fg_model *m = fg_model_new(&c.model, B, T);
    if (!m)
        die("model");
    fg_model_init_weights(m, c.seed);
    int nt = fg_model_num_tensors(m);
    fg_optim_range *ranges = fg_malloc((size_t)nt * sizeof *ranges);
    for (int i = 0; i < nt; i++) {
        const fg_tensor_info *t = fg_model_tensor(m, i);
        ranges[i] = (fg_optim_range){t->offset, t->numel, c.weight_decay > 0 && !t->no_decay, t->frozen, t->lr_scale};
    }
    fg_adamw_config ac = fg_adamw_config_default();
    ac.beta1 = c.beta1, ac.beta2 = c.beta2, ac.eps = c.eps, ac.weight_decay = c.weight_decay;
    fg_optim opt;
    if (fg_optim_init(&opt, fg_model_num_params(m), ranges, nt, &ac) != FG_OK)
        die("optimiser");
    fg_lr_schedule sched = {c.lr, c.min_lr, c.warmup_steps, c.max_steps};

    FILE *log = fopen(argv[2], "w");
    if (!log) {
        fprintf(stderr, "bench_moe_train: cannot write %s\n", argv[2]);
        return 1;
    }
    double flops_tok = fg_model_flops_per_token(m, T);
    printf("model: L=%d C=%d E=%d K=%d S=%d H=%d D=%d balance=%d, params %zu total / %zu active, %.4g FLOPs/token\n",
           c.model.n_layer, c.model.d_model, c.model.moe.n_expert, c.model.moe.n_expert_active,
           c.model.moe.n_shared_expert, c.model.moe.d_expert, c.model.moe.n_dense_layers, (int)c.model.moe.balance,
           fg_model_num_params(m), fg_model_num_active_params(m), flops_tok);
    fprintf(log,
            "{\"params\": %zu, \"active_params\": %zu, \"flops_per_token\": %.6g, \"tokens_per_step\": %d, "
            "\"warmup_steps\": %ld, \"balance\": %d, \"balance_gamma\": %g, \"balance_gain\": %g, "
            "\"router_lr_scale\": %g}\n",
            fg_model_num_params(m), fg_model_num_active_params(m), flops_tok, B * T, (long)c.warmup_steps,
            (int)c.model.moe.balance, (double)c.model.moe.balance_gamma, (double)c.model.moe.balance_gain,
            (double)c.model.moe.router_lr_scale);

    int32_t *inp = fg_malloc((size_t)B * T * sizeof(int32_t)), *tgt = fg_malloc((size_t)B * T * sizeof(int32_t));
    fg_rng rng;
    fg_rng_seed(&rng, c.seed + 1);
    double train_sec = 0, late_sec = 0, late_cpu = 0, late_tokens = 0;
    float val = 0;
    for (long step = 0; step < c.max_steps; step++) {
        make_batch(text, 0, split, B, T, &rng, 0, 1, inp, tgt);
        double t0 = fg_time_sec(), c0 = cpu_sec();
        float loss = 0;
        fg_model_zero_grad(m);
        if (fg_model_forward(m, inp, tgt, B, T, &loss) != FG_OK || fg_model_backward(m, 1.0f) != FG_OK)
            die("step");
        fg_moe_stats st;
        fg_model_moe_stats(m, &st);
        double norm = fg_optim_clip(&opt, fg_model_grads(m), c.grad_clip);
        float lr = fg_lr_at(&sched, step);
        fg_optim_step(&opt, fg_model_params(m), fg_model_grads(m), lr);
        fg_model_post_step(m);
        double dt = fg_time_sec() - t0, dc = cpu_sec() - c0;
        train_sec += dt;
        if (step >= 10) /* the first steps pay for page faults and thread start-up */
            late_sec += dt, late_cpu += dc, late_tokens += (double)B * T;
        fprintf(log,
                "{\"step\": %ld, \"loss\": %.6f, \"aux\": %.6g, \"lr\": %.5g, \"grad_norm\": %.4g, \"step_s\": %.4f, "
                "\"step_cpu_s\": %.4f, "
                "\"load_max_mean\": %.4f, \"load_cv\": %.4f, \"active_frac\": %.5f, \"dropped\": %ld",
                step + 1, loss - st.aux_loss, st.aux_loss, lr, norm, dt, dc, st.load_max_over_mean, st.load_cv,
                st.active_frac, st.dropped_tokens);
        if (c.model.moe.n_expert > 0)
            layer_loads(m, log), top_expert_clusters(m, inp, c.model.vocab_size, log);
        fprintf(log, "}\n");
        bool last = step + 1 == c.max_steps;
        if ((c.val_every > 0 && (step + 1) % c.val_every == 0) || last) {
            double sum = 0;
            for (int vb = 0; vb < c.val_batches; vb++) {
                float vl = 0;
                make_batch(text, split, n_text, B, T, NULL, vb, c.val_batches, inp, tgt);
                if (fg_model_forward(m, inp, tgt, B, T, &vl) != FG_OK)
                    die("validation");
                fg_model_moe_stats(m, &st);
                sum += vl - st.aux_loss; /* the language-model loss alone */
            }
            val = (float)(sum / c.val_batches);
            fprintf(log, "{\"step\": %ld, \"val_loss\": %.6f, \"train_s\": %.3f}\n", step + 1, val, train_sec);
            printf("step %5ld | loss %.4f | val %.4f | max/mean load %.3f | %.0f tok/s\n", step + 1, loss - st.aux_loss,
                   val, st.load_max_over_mean, late_sec > 0 ? late_tokens / late_sec : 0.0);
            fflush(stdout);
        }
        fflush(log);
    }
    double tps = late_sec > 0 ? late_tokens / late_sec : 0, tpc = late_cpu > 0 ? late_tokens / late_cpu : 0;
    fprintf(log,
            "{\"final\": true, \"val_loss\": %.6f, \"tokens_per_s\": %.2f, \"tokens_per_cpu_s\": %.2f, "
            "\"train_s\": %.3f, \"flops\": %.6g, \"params\": %zu, \"active_params\": %zu}\n",
            val, tps, tpc, train_sec, flops_tok * (double)B * T * (double)c.max_steps, fg_model_num_params(m),
            fg_model_num_active_params(m));
    fclose(log);
    printf("tokens/s after step 10: %.1f wall, %.1f per CPU-second\n", tps, tpc);
    fg_model_moe_print_loads(m, stdout);
    fg_free(inp);
    fg_free(tgt);
    fg_free(ranges);
    fg_free(text);
    fg_optim_free(&opt);
    fg_model_delete(m);
    return 0;
}
