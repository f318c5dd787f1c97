// struct tw_tensor: shapes, strides, views and their validation.
#include "tensor/tensor.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

int tw_tensor_init(struct tw_tensor *t, enum tw_dtype dtype, int ndim, const int64_t *shape,
                   void *data, const char *name)
{
    const char *what = name ? name : "tensor";
    if (ndim < 1 || ndim > TW_MAX_DIMS)
        return tw_error_set(TW_EINVAL, "%s: %d dimensions (1 to %d supported)", what, ndim,
                            TW_MAX_DIMS);
    if ((int)dtype < 0 || dtype >= TW_DTYPE_COUNT)
        return tw_error_set(TW_EINVAL, "%s: unknown dtype %d", what, (int)dtype);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return tw_error_set(TW_EINVAL, "%s: dimension %d is negative (%" PRId64 ")", what, i,
                                shape[i]);
        if (__builtin_mul_overflow(n, (size_t)shape[i], &n))
            return tw_error_set(TW_EOVERFLOW, "%s: the element count overflows", what);
    }
    size_t row = 0, total = 0;
    if (tw_dtype_nbytes(dtype, (size_t)shape[ndim - 1], &row) != 0)
        return tw_error_prefix("%s: last dimension", what);
    if (tw_dtype_nbytes(dtype, n, &total) != 0)
        return tw_error_prefix("%s", what);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->device = TW_DEVICE_CPU;
    t->ndim = ndim;
    t->data = data;
    t->name = name;
    for (int i = 0; i < TW_MAX_DIMS; i++)
        t->ne[i] = i < ndim ? shape[i] : 1;
    t->nb[ndim - 1] = tw_dtype_block_bytes(dtype);
    size_t stride = row;
    for (int i = ndim - 2; i >= 0; i--) {
        t->nb[i] = stride;
        stride *= (size_t)shape[i];
    }
    for (int i = ndim; i < TW_MAX_DIMS; i++)
        t->nb[i] = total;
    return 0;
}

static struct tw_tensor f32_nd(float *data, int ndim, const int64_t *shape)
{
    struct tw_tensor t;
    int rc = tw_tensor_init(&t, TW_DTYPE_F32, ndim, shape, data, NULL);
    assert(rc == 0);
    (void)rc;
    return t;
}

struct tw_tensor tw_tensor_f32_1d(float *data, int64_t n0)
{
    return f32_nd(data, 1, (int64_t[]){ n0 });
}

struct tw_tensor tw_tensor_f32_2d(float *data, int64_t n0, int64_t n1)
{
    return f32_nd(data, 2, (int64_t[]){ n0, n1 });
}

struct tw_tensor tw_tensor_f32_3d(float *data, int64_t n0, int64_t n1, int64_t n2)
{
    return f32_nd(data, 3, (int64_t[]){ n0, n1, n2 });
}

int64_t tw_tensor_nelem(const struct tw_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->ne[i];
    return n;
}

int64_t tw_tensor_nrows(const struct tw_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim - 1; i++)
        n *= t->ne[i];
    return n;
}

int64_t tw_tensor_ncols(const struct tw_tensor *t)
{
    return t->ne[t->ndim - 1];
}

size_t tw_tensor_row_bytes(const struct tw_tensor *t)
{
    return (size_t)t->ne[t->ndim - 1] / tw_dtype_block_size(t->dtype) *
           tw_dtype_block_bytes(t->dtype);
}

size_t tw_tensor_nbytes(const struct tw_tensor *t)
{
    return (size_t)tw_tensor_nrows(t) * tw_tensor_row_bytes(t);
}

bool tw_tensor_is_contiguous(const struct tw_tensor *t)
{
    if (t->nb[t->ndim - 1] != tw_dtype_block_bytes(t->dtype))
        return false;
    size_t stride = tw_tensor_row_bytes(t);
    for (int i = t->ndim - 2; i >= 0; i--) {
        if (t->ne[i] > 1 && t->nb[i] != stride)
            return false;
        stride *= (size_t)t->ne[i];
    }
    return true;
}

void *tw_tensor_row(const struct tw_tensor *t, int64_t r)
{
    assert(r >= 0 && r < tw_tensor_nrows(t));
    // Rows are evenly spaced when every outer stride is the next one's extent times stride.
    if (t->ndim == 1)
        return t->data;
    size_t off = 0;
    for (int i = t->ndim - 2; i >= 0; i--) {
        off += (size_t)(r % t->ne[i]) * t->nb[i];
        r /= t->ne[i];
    }
    return (char *)t->data + off;
}

struct tw_tensor tw_tensor_slice(const struct tw_tensor *t, int64_t r0, int64_t n)
{
    assert(r0 >= 0 && n >= 0 && r0 + n <= t->ne[0]);
    struct tw_tensor v = *t;
    v.ne[0] = n;
    v.data = (char *)t->data + (size_t)r0 * t->nb[0];
    return v;
}

struct tw_tensor tw_tensor_reshape(const struct tw_tensor *t, int ndim, const int64_t *shape)
{
    assert(tw_tensor_is_contiguous(t));
    struct tw_tensor v;
    int rc = tw_tensor_init(&v, t->dtype, ndim, shape, t->data, t->name);
    assert(rc == 0 && tw_tensor_nelem(&v) == tw_tensor_nelem(t));
    (void)rc;
    v.device = t->device;
    return v;
}

const char *tw_tensor_describe(const struct tw_tensor *t, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "%s (", tw_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k > 0 && (size_t)k < cap; i++)
        k += snprintf(buf + k, cap - (size_t)k, i ? ", %" PRId64 : "%" PRId64, t->ne[i]);
    if (k > 0 && (size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, ")");
    return buf;
}
