/* safetensors.c: the safetensors format (8-byte little-endian header length, a JSON
 * header of {name: {dtype, shape, data_offsets}} and __metadata__, then the tensor bytes),
 * reader with the reference implementation's checks, writer, shards with an index. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert_impl.h"
#include "frugal/convert.h"

/* the reference implementation refuses headers over 100 MB (MAX_HEADER_SIZE) */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_DEFAULT_SHARD ((size_t)5 * 1000 * 1000 * 1000)

static const char *const dtype_names[] = {"F32", "F16", "BF16", "F64"};
static const size_t dtype_bytes[] = {4, 2, 2, 8};
/* dtypes the specification knows that Frugal does not read (a model in these is refused
 * as unsupported, an unknown string as malformed) */
static const char *const other_dtypes[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16",     "U16",     "I32",
                                           "U32",  "I64", "U64", "F8_E8M0", "F4",      "F6_E2M3", "F6_E3M2", "C64"};

/* ---- fp16 ---- */
uint16_t fg_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (nan keeps a quiet payload bit) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {   /* below the smallest normal half 2^-14: subnormal or zero */
        if (ax < 0x33000000u) /* < 2^-25: rounds to 0 */
            return (uint16_t)sign;
        int e = (int)(ax >> 23); /* 102..112 */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        int shift = 126 - e; /* half subnormal unit is 2^-24: m * 2^(e-150) / 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = ((ax >> 23) - 112) << 10, m = ax & 0x7fffffu;
    uint32_t h = e | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float fg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e)
        x = sign | ((e + 112) << 23) | (m << 13);
    else if (m) { /* subnormal: normalise */
        int s = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            s++;
        }
        x = sign | ((uint32_t)(113 - s) << 23) | ((m & 0x3ffu) << 13);
    } else
        x = sign;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---- reader ---- */
size_t fg_st_numel(const fg_st_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static int cmp_begin(const void *a, const void *b)
{
    const fg_st_tensor *x = *(const fg_st_tensor *const *)a, *y = *(const fg_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static void shape_str(const fg_st_tensor *t, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* One tensor entry of the header into *t; the message names the file and the tensor. */
static fg_status parse_entry(const char *path, const char *name, json_t *v, fg_st_tensor *t)
{
    if (strlen(name) >= sizeof t->name)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: tensor name '%.40s...' is longer than %zu bytes", path, name,
                        sizeof t->name - 1);
    snprintf(t->name, sizeof t->name, "%s", name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_array_size(off) != 2)
        return fg_error(FG_ERR_FORMAT,
                        "%s: header: tensor '%s' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" "
                        "(two integers)",
                        path, name);
    const char *d = json_string_value(dt);
    int found = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(d, dtype_names[i]))
            found = i;
    if (found < 0) {
        for (size_t i = 0; i < sizeof other_dtypes / sizeof *other_dtypes; i++)
            if (!strcmp(d, other_dtypes[i]))
                return fg_error(FG_ERR_UNSUPPORTED,
                                "%s: header: tensor '%s' has dtype %s; Frugal reads F32, F16, BF16 and F64", path, name,
                                d);
        return fg_error(FG_ERR_FORMAT, "%s: header: tensor '%s' has unknown dtype '%s'", path, name, d);
    }
    t->dtype = (fg_st_dtype)found;
    if (json_array_size(sh) > FG_ST_MAX_DIM)
        return fg_error(FG_ERR_UNSUPPORTED, "%s: header: tensor '%s' has %zu dimensions (at most %d)", path, name,
                        json_array_size(sh), FG_ST_MAX_DIM);
    t->ndim = (int)json_array_size(sh);
    double numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *e = json_array_get(sh, (size_t)i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return fg_error(FG_ERR_FORMAT, "%s: header: tensor '%s': shape[%d] is not a non-negative integer", path,
                            name, i);
        t->shape[i] = json_integer_value(e);
        numel *= (double)t->shape[i];
    }
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return fg_error(FG_ERR_FORMAT, "%s: header: tensor '%s': data_offsets must be integers 0 <= begin <= end", path,
                        name);
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    double want = numel * (double)dtype_bytes[t->dtype];
    if ((double)(t->end - t->begin) != want) {
        char s[128];
        shape_str(t, s, sizeof s);
        return fg_error(FG_ERR_FORMAT,
                        "%s: header: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but dtype %s and shape %s "
                        "need %.0f",
                        path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)(t->end - t->begin), d, s, want);
    }
    return FG_OK;
}

/* Maps one file and appends its tensors to s. */
static fg_status open_one(fg_st_set *s, const char *path)
{
    int fi = s->n_files;
    char **np = fg_realloc(s->paths, (size_t)(fi + 1) * sizeof *np);
    if (!np)
        return FG_ERR_NOMEM;
    s->paths = np;
    const uint8_t **nm = fg_realloc(s->maps, (size_t)(fi + 1) * sizeof *nm);
    if (!nm)
        return FG_ERR_NOMEM;
    s->maps = nm;
    size_t *ns = fg_realloc(s->sizes, (size_t)(fi + 1) * sizeof *ns);
    if (!ns)
        return FG_ERR_NOMEM;
    s->sizes = ns;
    size_t *nd = fg_realloc(s->data_start, (size_t)(fi + 1) * sizeof *nd);
    if (!nd)
        return FG_ERR_NOMEM;
    s->data_start = nd;
    if (!(s->paths[fi] = fg_strdup(path)))
        return FG_ERR_NOMEM;
    s->maps[fi] = NULL;
    s->sizes[fi] = 0;
    s->n_files++;

    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fg_error(FG_ERR_IO, "%s: cannot open safetensors file: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        close(fd);
        return fg_error(FG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    size_t size = (size_t)stt.st_size;
    if (size < 8) {
        close(fd);
        return fg_error(FG_ERR_CORRUPT, "%s: truncated: %zu bytes, shorter than the 8-byte header length", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return fg_error(FG_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    s->maps[fi] = map;
    s->sizes[fi] = size;
    const uint8_t *p = map;
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = hn << 8 | p[i];
    if (hn > ST_MAX_HEADER)
        return fg_error(FG_ERR_FORMAT, "%s: header length %llu at byte 0 is over the specification's limit of %u bytes",
                        path, (unsigned long long)hn, ST_MAX_HEADER);
    if (hn + 8 > size)
        return fg_error(FG_ERR_CORRUPT, "%s: truncated: header length %llu at byte 0, but the file has %zu bytes", path,
                        (unsigned long long)hn, size);
    s->data_start[fi] = 8 + (size_t)hn;
    if (hn < 2 || p[8] != '{')
        return fg_error(FG_ERR_FORMAT, "%s: header (bytes 8..%llu) does not start with '{'", path,
                        (unsigned long long)(hn + 8));
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hn, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fg_error(FG_ERR_FORMAT, "%s: header JSON at byte %d: %s", path, je.position + 8, je.text);
    fg_status st = FG_OK;
    if (!json_is_object(root)) {
        st = fg_error(FG_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    size_t first = (size_t)s->n, cnt = json_object_size(root);
    fg_st_tensor *nt = fg_realloc(s->t, (first + cnt + 1) * sizeof *nt);
    if (!nt) {
        st = FG_ERR_NOMEM;
        goto out;
    }
    s->t = nt;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            int ok = json_is_object(v);
            json_object_foreach(v, mk, mv) ok = ok && json_is_string(mv);
            if (!ok) {
                st = fg_error(FG_ERR_FORMAT, "%s: header: __metadata__ must be an object of strings", path);
                goto out;
            }
            if (fi == 0 && !s->metadata_json && !(s->metadata_json = json_dumps(v, JSON_COMPACT))) {
                st = FG_ERR_NOMEM;
                goto out;
            }
            continue;
        }
        fg_st_tensor *t = &s->t[s->n];
        memset(t, 0, sizeof *t);
        t->file = fi;
        if ((st = parse_entry(path, key, v, t)) != FG_OK)
            goto out;
        if (fg_st_find(s, key)) {
            st = fg_error(FG_ERR_FORMAT, "%s: tensor '%s' appears in more than one file", path, key);
            goto out;
        }
        s->n++;
    }
    /* the reference's validate(): sorted by offset, the tensors tile the byte buffer */
    size_t nf = (size_t)s->n - first;
    const fg_st_tensor **order = fg_malloc((nf + 1) * sizeof *order);
    if (!order) {
        st = FG_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < nf; i++)
        order[i] = &s->t[first + i];
    qsort(order, nf, sizeof *order, cmp_begin);
    uint64_t at = 0, buf = size - s->data_start[fi];
    for (size_t i = 0; i < nf && st == FG_OK; i++) {
        if (order[i]->begin != at)
            st = fg_error(FG_ERR_FORMAT,
                          "%s: header: tensor '%s' starts at data offset %llu, expected %llu (tensors must tile the "
                          "data without gaps or overlaps)",
                          path, order[i]->name, (unsigned long long)order[i]->begin, (unsigned long long)at);
        at = order[i]->end;
    }
    fg_free(order);
    if (st == FG_OK && at != buf)
        st = fg_error(at > buf ? FG_ERR_CORRUPT : FG_ERR_FORMAT,
                      "%s: %s: the header's tensors end at data offset %llu (file byte %llu), the file has %llu data "
                      "bytes (%zu in all)",
                      path, at > buf ? "truncated" : "trailing bytes", (unsigned long long)at,
                      (unsigned long long)(at + s->data_start[fi]), (unsigned long long)buf, size);
out:
    json_decref(root);
    return st;
}

/* <dir>/model.safetensors.index.json: the shards its weight_map names, each opened;
 * every name of the map must be in the shard it names. */
static fg_status open_index(fg_st_set *s, const char *dir, const char *ipath)
{
    json_error_t je;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fg_error(FG_ERR_FORMAT, "%s:%d:%d: %s", ipath, je.line, je.column, je.text);
    fg_status st = FG_OK;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        st = fg_error(FG_ERR_FORMAT, "%s: no \"weight_map\" object", ipath);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v)
    {
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/')) {
            st = fg_error(FG_ERR_FORMAT, "%s: weight_map['%s'] must be a file name in the directory", ipath, key);
            goto out;
        }
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, f);
        int have = 0;
        for (int i = 0; i < s->n_files; i++)
            have |= !strcmp(s->paths[i], p);
        if (!have && (st = open_one(s, p)) != FG_OK)
            goto out;
    }
    json_object_foreach(wm, key, v)
    {
        const fg_st_tensor *t = fg_st_find(s, key);
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, json_string_value(v));
        if (!t || strcmp(s->paths[t->file], p)) {
            st = fg_error(FG_ERR_FORMAT, "%s: weight_map says tensor '%s' is in %s, which does not hold it", ipath, key,
                          json_string_value(v));
            goto out;
        }
    }
    if ((size_t)s->n != json_object_size(wm))
        st = fg_error(FG_ERR_FORMAT, "%s: the shards hold %d tensors, weight_map names %zu", ipath, s->n,
                      json_object_size(wm));
out:
    json_decref(root);
    return st;
}

fg_status fg_st_open(fg_st_set *s, const char *path)
{
    memset(s, 0, sizeof *s);
    struct stat stt;
    fg_status st;
    if (stat(path, &stt) == 0 && S_ISDIR(stt.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/model.safetensors", path);
        if (access(p, F_OK) == 0)
            st = open_one(s, p);
        else {
            snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
            if (access(p, F_OK) != 0)
                st = fg_error(FG_ERR_IO, "%s: holds neither model.safetensors nor model.safetensors.index.json", path);
            else
                st = open_index(s, path, p);
        }
    } else
        st = open_one(s, path);
    if (st != FG_OK)
        fg_st_close(s);
    return st;
}

void fg_st_close(fg_st_set *s)
{
    for (int i = 0; i < s->n_files; i++) {
        if (s->maps && s->maps[i])
            munmap((void *)s->maps[i], s->sizes[i]);
        fg_free(s->paths[i]);
    }
    fg_free(s->paths);
    fg_free((void *)s->maps);
    fg_free(s->sizes);
    fg_free(s->data_start);
    fg_free(s->t);
    free(s->metadata_json); /* jansson's malloc */
    memset(s, 0, sizeof *s);
}

const fg_st_tensor *fg_st_find(const fg_st_set *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name))
            return &s->t[i];
    return NULL;
}

void fg_st_read_f32(const fg_st_set *s, const fg_st_tensor *t, float *out)
{
    const uint8_t *p = s->maps[t->file] + s->data_start[t->file] + t->begin;
    size_t n = fg_st_numel(t);
    switch (t->dtype) {
    case FG_ST_F32: memcpy(out, p, n * 4); break;
    case FG_ST_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = fg_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case FG_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t x = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &x, 4);
        }
        break;
    case FG_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        break;
    }
}

/* ---- writer ---- */
static size_t out_bytes(const fg_st_out *t)
{
    size_t n = 4;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

fg_status fg_st_write_file(const char *path, const fg_st_out *t, int n, const char *const *metadata)
{
    json_t *root = json_object();
    if (!root)
        return FG_ERR_NOMEM;
    if (metadata) {
        json_t *md = json_object();
        for (int i = 0; metadata[i] && metadata[i + 1]; i += 2)
            json_object_set_new(md, metadata[i], json_string(metadata[i + 1]));
        json_object_set_new(root, "__metadata__", md);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *sh = json_array();
        for (int d = 0; d < t[i].ndim; d++)
            json_array_append_new(sh, json_integer(t[i].shape[d]));
        uint64_t b = out_bytes(&t[i]);
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", sh, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + b)));
        off += b;
    }
    char *hdr = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!hdr)
        return FG_ERR_NOMEM;
    /* the reference writer pads the header with spaces to a multiple of 8, so the data
     * (and every F32 tensor in it) is aligned in a mapped file */
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fg_file_tx tx;
    fg_status st = fg_file_tx_open(&tx, path, 0);
    if (st != FG_OK) {
        free(hdr);
        return st;
    }
    fg_file_tx_write(&tx, len8, 8);
    fg_file_tx_write(&tx, hdr, hl);
    fg_file_tx_write(&tx, "        ", padded - hl);
    free(hdr);
    for (int i = 0; i < n; i++)
        fg_file_tx_write(&tx, t[i].data, out_bytes(&t[i])); /* little-endian host (x86-64, aarch64) */
    return fg_file_tx_commit(&tx);
}

fg_status fg_st_write_dir(const char *dir, const fg_st_out *t, int n, size_t max_shard_bytes,
                          const char *const *metadata)
{
    if (!max_shard_bytes)
        max_shard_bytes = ST_DEFAULT_SHARD;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += out_bytes(&t[i]);
    char path[4096];
    if (total <= max_shard_bytes) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        return fg_st_write_file(path, t, n, metadata);
    }
    /* greedy shards in order, a tensor larger than the limit alone in its shard
     * (transformers' rule) */
    int *shard_of = fg_malloc((size_t)n * sizeof *shard_of);
    if (!shard_of)
        return FG_ERR_NOMEM;
    int ns = 0;
    size_t cur = 0;
    for (int i = 0; i < n; i++) {
        size_t b = out_bytes(&t[i]);
        if (i == 0 || (cur + b > max_shard_bytes && cur > 0)) {
            ns++;
            cur = 0;
        }
        shard_of[i] = ns - 1;
        cur += b;
    }
    fg_status st = FG_OK;
    json_t *idx = json_object(), *wm = json_object();
    for (int s = 0, i = 0; s < ns && st == FG_OK; s++) {
        int j = i;
        while (j < n && shard_of[j] == s)
            j++;
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, ns);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        st = fg_st_write_file(path, t + i, j - i, metadata);
        for (int k = i; k < j; k++)
            json_object_set_new(wm, t[k].name, json_string(name));
        i = j;
    }
    fg_free(shard_of);
    json_object_set_new(idx, "metadata", json_pack("{s:I}", "total_size", (json_int_t)total));
    json_object_set_new(idx, "weight_map", wm);
    if (st == FG_OK) {
        char *txt = json_dumps(idx, JSON_INDENT(2));
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        st = txt ? fg_file_commit(path, txt, strlen(txt)) : FG_ERR_NOMEM;
        free(txt);
    }
    json_decref(idx);
    return st;
}
