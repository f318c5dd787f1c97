// Fuzzes model/safetensors' reader: tw_st_open on a file holding the input; when it opens,
// every tensor is walked (first and last data byte touched, found again by name, the data
// contiguous and filling the file), the metadata read, and the tensors written again with the
// writer (header from tw_st_writer_header, data appended) and read back unchanged. A second
// pass sets the header length so that the header ends at the input's last '}', which lets
// mutations that grow or shrink the JSON reach the checks behind the length.
#define _GNU_SOURCE // memrchr
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "model/safetensors.h"

static char path[64], path2[64];

static void write_file(const char *p, const void *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

static void same_or_abort(const struct tw_st_tensor *a, const struct tw_st_tensor *b)
{
    if (!b || strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || a->n_dims != b->n_dims ||
        a->nbytes != b->nbytes || (a->nbytes && memcmp(a->data, b->data, a->nbytes) != 0))
        abort();
    for (int d = 0; d < a->n_dims; d++)
        if (a->shape[d] != b->shape[d])
            abort();
}

// The writer's data order: dtypes descending, then names (insertion sort: inputs are small).
static void writer_order(const struct tw_st_tensor **t, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        const struct tw_st_tensor *x = t[i];
        size_t j = i;
        while (j > 0 && (t[j - 1]->dtype < x->dtype ||
                         (t[j - 1]->dtype == x->dtype && strcmp(t[j - 1]->name, x->name) > 0))) {
            t[j] = t[j - 1];
            j--;
        }
        t[j] = x;
    }
}

// Writes f's tensors and metadata again (the writer's header, then the data in its order,
// without the fsync of tw_st_write) and checks that they read back the same.
static void rewrite(const tw_st_file *f)
{
    size_t n = tw_st_count(f), total = 0;
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    const struct tw_st_tensor **order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        abort();
    for (size_t i = 0; i < n; i++) {
        const struct tw_st_tensor *t = order[i] = tw_st_tensor_at(f, i);
        if (tw_st_writer_add(&w, t->name, t->dtype, t->shape, t->n_dims, t->data, t->nbytes))
            abort(); // whatever the reader accepts, the writer takes
        total += t->nbytes;
    }
    for (size_t i = 0; i < tw_st_meta_count(f); i++) {
        const char *k, *v;
        tw_st_meta_at(f, i, &k, &v);
        if (tw_st_writer_metadata(&w, k, v) != 0)
            abort();
    }
    char *hdr;
    size_t hlen;
    if (tw_st_writer_header(&w, &hdr, &hlen) != 0 || hlen % 8 != 0)
        abort();
    uint8_t *buf = malloc(hlen + total + 1);
    if (!buf)
        abort();
    memcpy(buf, hdr, hlen);
    tw_free(hdr);
    writer_order(order, n);
    size_t at = hlen;
    for (size_t i = 0; i < n; i++) {
        if (order[i]->nbytes)
            memcpy(buf + at, order[i]->data, order[i]->nbytes);
        at += order[i]->nbytes;
    }
    write_file(path2, buf, at);
    tw_st_file *g;
    if (tw_st_open(path2, &g) != 0)
        abort(); // the writer wrote a file the reader refuses
    if (tw_st_count(g) != n || tw_st_meta_count(g) != tw_st_meta_count(f))
        abort();
    for (size_t i = 0; i < n; i++) {
        same_or_abort(order[i], tw_st_tensor_at(g, i)); // the reader's order is the writer's
        same_or_abort(order[i], tw_st_find(g, order[i]->name));
    }
    for (size_t i = 0; i < tw_st_meta_count(f); i++) {
        const char *k, *v, *v2;
        tw_st_meta_at(f, i, &k, &v);
        v2 = tw_st_meta_get(g, k);
        if (!v2 || strcmp(v, v2) != 0)
            abort();
    }
    tw_st_close(g);
    free(order);
    free(buf);
    tw_st_writer_free(&w);
    unlink(path2);
}

static volatile uint8_t sink;

// Opens a file holding data and walks it when it opens.
static void check(const uint8_t *data, size_t size)
{
    write_file(path, data, size);
    tw_st_file *f;
    if (tw_st_open(path, &f) != 0)
        return;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | data[i];
    const uint8_t *first = NULL;
    size_t total = 0;
    for (size_t i = 0; i < tw_st_count(f); i++) {
        const struct tw_st_tensor *t = tw_st_tensor_at(f, i);
        if (i == 0)
            first = t->data;
        // Contiguous, in file order, and each the size its shape says.
        if ((const uint8_t *)t->data != first + total)
            abort();
        size_t elems = 1;
        for (int d = 0; d < t->n_dims; d++)
            elems *= (size_t)t->shape[d];
        if (t->n_dims < 0 || t->n_dims > TW_ST_MAX_DIMS ||
            elems * tw_st_dtype_size(t->dtype) != t->nbytes)
            abort();
        if (t->nbytes)
            sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        if (tw_st_find(f, t->name) != t)
            abort();
        total += t->nbytes;
    }
    if (8 + n + total != size) // the tensors fill the data exactly
        abort();
    for (size_t i = 0; i < tw_st_meta_count(f); i++) {
        const char *k, *v;
        tw_st_meta_at(f, i, &k, &v);
        if (tw_st_meta_get(f, k) != v)
            abort();
        sink ^= (uint8_t)(k[0] ^ v[0]);
    }
    rewrite(f);
    tw_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/twin-fuzz-st-%d.safetensors", (int)getpid());
        snprintf(path2, sizeof path2, "/tmp/twin-fuzz-st-%d-out.safetensors", (int)getpid());
    }
    check(data, size);
    // The header made to end at the last '}'.
    const uint8_t *end = size > 8 ? memrchr(data + 8, '}', size - 8) : NULL;
    if (end) {
        uint8_t *copy = malloc(size);
        if (!copy)
            abort();
        memcpy(copy, data, size);
        uint64_t n = (uint64_t)(end - data - 8) + 1;
        for (int i = 0; i < 8; i++)
            copy[i] = (uint8_t)(n >> (8 * i));
        if (memcmp(copy, data, 8) != 0)
            check(copy, size);
        free(copy);
    }
    unlink(path);
    return 0;
}
