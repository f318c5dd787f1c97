// The index file: tw_index_save and tw_index_load. Layout (little-endian, the host's order on
// the x86-64 and arm64 machines twin runs on), every byte covered by a CRC-32C:
//   header (280 bytes): "TWIX", u32 version, u32 kind, metric, dim, int8, m, ef_construction,
//     u64 seed, n (slots), n_deleted, rng state, u32 entry, i32 max_level, u32 has_entry,
//     u32 n_sections (8), then 8 x {u64 offset, u64 size, u32 crc, u32 id}, u32 header crc
//     (of the bytes before it), u32 zero;
//   sections back to back: vectors (n x dim f32), int8 (n x dim), scales (n f32), ids (n u64),
//   deleted (n u8), levels (n u8), graph (per node its link block of u32: level 0 [count, 2m
//   ids], then per level [count, m ids]), payloads (per node u32 n_fields, then per field
//   u32 key length, key, u8 type, and u32 length + bytes for a string or i64 for an integer).
// Load maps the file, checks every size, offset, count and neighbour index, and copies the
// sections into owned memory (so the loaded index accepts writes and the file can change).
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "index/index_int.h"

#define MAGIC     "TWIX"
#define VERSION   1u
#define N_SECT    8
#define HDR_FIXED 80
#define HDR_SIZE  (HDR_FIXED + N_SECT * 24 + 8)

enum { S_VEC, S_INT8, S_SCALE, S_IDS, S_DEL, S_LEVELS, S_GRAPH, S_PAYLOAD };
static const char *const sect_name[N_SECT] = { "vectors", "int8",   "scales", "ids",
                                               "deleted", "levels", "graph",  "payloads" };

// ---- a growable byte buffer for the serialised sections

struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = tw_realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}

int tw_index_save(const tw_index *ix, const char *path)
{
    if (!ix || !path)
        return tw_error_set(TW_EINVAL, "index: save: NULL argument");
    size_t n = ix->n, d = ix->opt.dim;
    struct buf graph = { 0 }, pay = { 0 }, hdr = { 0 };
    if (ix->opt.kind == TW_INDEX_HNSW) {
        for (size_t i = 0; i < n; i++) { // per node: level 0's list, then the upper ones
            put(&graph, tw_ix_links_at(ix, (uint32_t)i, 0), tw_ix_link0_words(ix) * 4);
            if (ix->levels[i] > 0)
                put(&graph, ix->links[i], tw_ix_upper_words(ix, ix->levels[i]) * 4);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct tw_ix_payload *p = &ix->payloads[i];
        put_u32(&pay, (uint32_t)p->n);
        for (size_t j = 0; j < p->n; j++) {
            size_t kl = strlen(p->f[j].key);
            put_u32(&pay, (uint32_t)kl);
            put(&pay, p->f[j].key, kl);
            uint8_t t = (uint8_t)p->f[j].type;
            put(&pay, &t, 1);
            if (p->f[j].type == TW_PV_STR) {
                size_t sl = strlen(p->f[j].s);
                put_u32(&pay, (uint32_t)sl);
                put(&pay, p->f[j].s, sl);
            } else {
                put_u64(&pay, (uint64_t)p->f[j].i);
            }
        }
    }
    const void *data[N_SECT] = { ix->vecs,    ix->qv,     ix->qscale, ix->ids,
                                 ix->deleted, ix->levels, graph.p,    pay.p };
    size_t size[N_SECT] = { n * d * sizeof(float),
                            ix->opt.int8 ? n * d : 0,
                            ix->opt.int8 ? n * sizeof(float) : 0,
                            n * sizeof(uint64_t),
                            n,
                            n,
                            graph.n,
                            pay.n };
    put(&hdr, MAGIC, 4);
    put_u32(&hdr, VERSION);
    put_u32(&hdr, (uint32_t)ix->opt.kind);
    put_u32(&hdr, (uint32_t)ix->opt.metric);
    put_u32(&hdr, ix->opt.dim);
    put_u32(&hdr, ix->opt.int8);
    put_u32(&hdr, ix->opt.m);
    put_u32(&hdr, ix->opt.ef_construction);
    put_u64(&hdr, ix->opt.seed);
    put_u64(&hdr, n);
    put_u64(&hdr, ix->n_deleted);
    put_u64(&hdr, ix->rng);
    put_u32(&hdr, ix->entry);
    put_u32(&hdr, (uint32_t)ix->max_level);
    put_u32(&hdr, ix->has_entry);
    put_u32(&hdr, N_SECT);
    uint64_t off = HDR_SIZE;
    for (int s = 0; s < N_SECT; s++) {
        put_u64(&hdr, off);
        put_u64(&hdr, size[s]);
        put_u32(&hdr, size[s] ? tw_ix_crc32c(0, data[s], size[s]) : 0);
        put_u32(&hdr, (uint32_t)s);
        off += size[s];
    }
    if (!hdr.oom)
        put_u32(&hdr, tw_ix_crc32c(0, hdr.p, hdr.n));
    put_u32(&hdr, 0);
    int rc;
    if (graph.oom || pay.oom || hdr.oom) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    struct tw_atomic a;
    if ((rc = tw_atomic_open(&a, path, 0644)))
        goto out;
    rc = tw_atomic_write(&a, hdr.p, hdr.n);
    for (int s = 0; s < N_SECT && rc == 0; s++) {
        if (size[s])
            rc = tw_atomic_write(&a, data[s], size[s]);
    }
    if (rc)
        tw_atomic_abort(&a);
    else
        rc = tw_atomic_commit(&a);
out:
    tw_free(graph.p);
    tw_free(pay.p);
    tw_free(hdr.p);
    return rc;
}

// ---- load

struct reader {
    const uint8_t *p;
    size_t n, at;
};

static bool take(struct reader *r, void *out, size_t n)
{
    if (r->n - r->at < n)
        return false;
    memcpy(out, r->p + r->at, n);
    r->at += n;
    return true;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#define BAD(sect, ...) bad(path, sect, __VA_ARGS__)
__attribute__((format(printf, 3, 4))) static int bad(const char *path, const char *sect,
                                                     const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tw_error_set(TW_EFORMAT, "%s: %s: %s", path, sect, msg);
}

static int load_payloads(struct tw_index *ix, const char *path, const uint8_t *p, size_t len)
{
    struct reader r = { p, len, 0 };
    for (size_t i = 0; i < ix->n; i++) {
        uint32_t nf;
        if (!take(&r, &nf, 4) || nf > (r.n - r.at) / 10)
            return BAD("payloads", "point %zu: field count is truncated or too large", i);
        struct tw_ix_payload *pl = &ix->payloads[i];
        if (nf && !(pl->f = tw_calloc(nf, sizeof *pl->f)))
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        for (uint32_t j = 0; j < nf; j++) {
            uint32_t kl, sl;
            uint8_t t;
            if (!take(&r, &kl, 4) || kl > r.n - r.at)
                return BAD("payloads", "point %zu: field %u: truncated key", i, j);
            const char *key = (const char *)r.p + r.at;
            r.at += kl;
            if (memchr(key, 0, kl) || !take(&r, &t, 1) || t > TW_PV_INT)
                return BAD("payloads", "point %zu: field %u: bad key or type", i, j);
            struct tw_pfield *f = &pl->f[j];
            if (!(f->key = tw_strndup(key, kl)))
                return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
            pl->n = j + 1;
            f->type = (enum tw_pvalue_type)t;
            if (t == TW_PV_STR) {
                if (!take(&r, &sl, 4) || sl > r.n - r.at || memchr(r.p + r.at, 0, sl))
                    return BAD("payloads", "point %zu: field %u: bad string", i, j);
                if (!(f->s = tw_strndup((const char *)r.p + r.at, sl)))
                    return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
                r.at += sl;
            } else {
                uint64_t v;
                if (!take(&r, &v, 8))
                    return BAD("payloads", "point %zu: field %u: truncated integer", i, j);
                f->i = (int64_t)v;
            }
        }
    }
    if (r.at != r.n)
        return BAD("payloads", "%zu bytes left over", r.n - r.at);
    return 0;
}

static int load_graph(struct tw_index *ix, const char *path, const uint8_t *p, size_t len)
{
    size_t at = 0, n = ix->n;
    for (size_t i = 0; i < n; i++) {
        size_t w0 = tw_ix_link0_words(ix), wu = tw_ix_upper_words(ix, ix->levels[i]);
        if (len - at < (w0 + wu) * 4)
            return BAD("graph", "node %zu: truncated", i);
        memcpy(tw_ix_links_at(ix, (uint32_t)i, 0), p + at, w0 * 4);
        at += w0 * 4;
        if (wu) {
            uint32_t *l = tw_malloc_array(wu, sizeof *l);
            if (!l)
                return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
            memcpy(l, p + at, wu * 4);
            ix->links[i] = l;
            at += wu * 4;
        }
        for (int lv = 0; lv <= ix->levels[i]; lv++) {
            const uint32_t *b = tw_ix_links_at(ix, (uint32_t)i, lv);
            uint32_t cap = lv == 0 ? 2 * ix->opt.m : ix->opt.m;
            if (b[0] > cap)
                return BAD("graph", "node %zu level %d: %u links, more than %u", i, lv, b[0], cap);
            for (uint32_t j = 0; j < b[0]; j++) {
                if (b[1 + j] >= n || b[1 + j] == i || ix->levels[b[1 + j]] < lv)
                    return BAD("graph", "node %zu level %d: neighbour %u is not a node there", i,
                               lv, b[1 + j]);
            }
        }
    }
    if (at != len)
        return BAD("graph", "%zu bytes left over", len - at);
    return 0;
}

// Fills ix (allocated with the header's options) from the verified sections.
static int load_body(struct tw_index *ix, const char *path, const uint8_t *base,
                     const uint64_t *off, const uint64_t *size, uint64_t n_deleted)
{
    size_t n = ix->n, d = ix->opt.dim;
    memcpy(ix->vecs, base + off[S_VEC], size[S_VEC]);
    for (size_t i = 0; i < n * d; i++) {
        if (!isfinite(ix->vecs[i]))
            return BAD("vectors", "element %zu is not finite", i);
    }
    if (ix->opt.int8) {
        memcpy(ix->qv, base + off[S_INT8], size[S_INT8]);
        memcpy(ix->qscale, base + off[S_SCALE], size[S_SCALE]);
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(ix->qscale[i]) || ix->qscale[i] < 0)
                return BAD("scales", "scale %zu is not a finite non-negative number", i);
        }
    }
    memcpy(ix->ids, base + off[S_IDS], size[S_IDS]);
    memcpy(ix->deleted, base + off[S_DEL], size[S_DEL]);
    memcpy(ix->levels, base + off[S_LEVELS], size[S_LEVELS]);
    size_t dead = 0;
    for (size_t i = 0; i < n; i++) {
        if (ix->deleted[i] > 1)
            return BAD("deleted", "flag %zu is %u", i, ix->deleted[i]);
        dead += ix->deleted[i];
        if (ix->levels[i] > (ix->opt.kind == TW_INDEX_HNSW ? TW_IX_MAX_LEVEL : 0))
            return BAD("levels", "node %zu: level %u is too high", i, ix->levels[i]);
    }
    if (dead != n_deleted)
        return BAD("deleted", "%zu flags set, the header says %llu", dead,
                   (unsigned long long)n_deleted);
    ix->n_deleted = dead;
    if (ix->opt.kind == TW_INDEX_HNSW) {
        int rc = load_graph(ix, path, base + off[S_GRAPH], size[S_GRAPH]);
        if (rc)
            return rc;
        if (n > 0 && (!ix->has_entry || ix->entry >= n || ix->levels[ix->entry] != ix->max_level))
            return BAD("header", "entry point %u (level %d) is not a top node", ix->entry,
                       ix->max_level);
        for (size_t i = 0; i < n; i++) {
            if (ix->levels[i] > ix->max_level)
                return BAD("levels", "node %zu is above the entry point", i);
        }
    } else if (size[S_GRAPH] != 0 || ix->has_entry) {
        return BAD("graph", "a flat index has a graph");
    }
    if (tw_map_reserve(&ix->slot_of, n - dead))
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        if (ix->deleted[i])
            continue;
        if (tw_map_get_u64(&ix->slot_of, ix->ids[i], NULL))
            return BAD("ids", "id %llu is live twice", (unsigned long long)ix->ids[i]);
        tw_map_put_u64(&ix->slot_of, ix->ids[i], i);
    }
    int rc = load_payloads(ix, path, base + off[S_PAYLOAD], size[S_PAYLOAD]);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        ix->norm2[i] = ix->k.dot(ix->vecs + i * d, ix->vecs + i * d, d);
    return 0;
}

static int load_mapped(const char *path, const uint8_t *p, size_t len, tw_index **out)
{
    if (len < HDR_SIZE)
        return BAD("header", "truncated (%zu bytes)", len);
    if (memcmp(p, MAGIC, 4) != 0)
        return BAD("header", "not an index file (no TWIX magic)");
    if (rd32(p + 4) != VERSION)
        return BAD("header", "format version %u, this build reads %u", rd32(p + 4), VERSION);
    if (tw_ix_crc32c(0, p, HDR_SIZE - 8) != rd32(p + HDR_SIZE - 8) || rd32(p + HDR_SIZE - 4))
        return BAD("header", "checksum mismatch");
    struct tw_index_options o = {
        .kind = (enum tw_index_kind)rd32(p + 8),
        .metric = (enum tw_metric)rd32(p + 12),
        .dim = rd32(p + 16),
        .int8 = rd32(p + 20) != 0,
        .m = rd32(p + 24),
        .ef_construction = rd32(p + 28),
        .seed = rd64(p + 32),
    };
    uint64_t n = rd64(p + 40), n_deleted = rd64(p + 48);
    if (rd32(p + 20) > 1 || rd32(p + 76) != N_SECT || rd32(p + 72) > 1)
        return BAD("header", "bad flags or section count");
    if (n > UINT32_MAX || n_deleted > n)
        return BAD("header", "%llu points, %llu deleted", (unsigned long long)n,
                   (unsigned long long)n_deleted);
    uint64_t off[N_SECT], size[N_SECT], want[N_SECT], end = HDR_SIZE;
    uint64_t d = o.dim;
    want[S_VEC] = n * d * 4; // n < 2^32, d <= 65536: no overflow
    want[S_INT8] = o.int8 ? n * d : 0;
    want[S_SCALE] = o.int8 ? n * 4 : 0;
    want[S_IDS] = n * 8;
    want[S_DEL] = want[S_LEVELS] = n;
    for (int s = 0; s < N_SECT; s++) {
        const uint8_t *e = p + HDR_FIXED + (size_t)s * 24;
        off[s] = rd64(e);
        size[s] = rd64(e + 8);
        if (rd32(e + 20) != (uint32_t)s || off[s] != end || size[s] > len ||
            off[s] > len - size[s])
            return BAD(sect_name[s], "offset %llu and size %llu do not fit the file of %zu bytes",
                       (unsigned long long)off[s], (unsigned long long)size[s], len);
        if (s < S_GRAPH && size[s] != want[s])
            return BAD(sect_name[s], "%llu bytes, expected %llu", (unsigned long long)size[s],
                       (unsigned long long)want[s]);
        if (tw_ix_crc32c(0, p + off[s], size[s]) != rd32(e + 16))
            return BAD(sect_name[s], "checksum mismatch");
        end = off[s] + size[s];
    }
    if (end != len)
        return BAD("header", "%zu bytes after the last section", len - (size_t)end);
    struct tw_index *ix;
    int rc = tw_ix_alloc_core(&o, &ix);
    if (rc)
        return BAD("header", "bad options (%s)", tw_error_msg());
    if ((rc = tw_ix_reserve(ix, n))) {
        tw_index_free(ix);
        return rc;
    }
    ix->n = n;
    ix->rng = rd64(p + 56);
    ix->entry = rd32(p + 64);
    ix->max_level = (int32_t)rd32(p + 68);
    ix->has_entry = rd32(p + 72) != 0;
    if ((rc = load_body(ix, path, p, off, size, n_deleted))) {
        tw_index_free(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

int tw_index_load(const char *path, tw_index **out)
{
    if (!path || !out)
        return tw_error_set(TW_EINVAL, "index: load: NULL argument");
    struct tw_mmap m = { 0 };
    int rc = tw_mmap_open(&m, path);
    if (rc)
        return rc;
    rc = load_mapped(path, m.data, m.len, out);
    tw_mmap_close(&m);
    return rc;
}
