// The one tensor type of twin's engine: a dtype, a shape (outermost first, as PyTorch writes
// it: the last dimension is contiguous), byte strides, a data pointer and the device the data
// lives on. A tensor never owns its data: weights point into a memory-mapped model file,
// activations into a context's one allocation (ARCHITECTURE.md, "The engine").
#ifndef TW_TENSOR_TENSOR_H
#define TW_TENSOR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"

#define TW_MAX_DIMS 4

enum tw_device { TW_DEVICE_CPU, TW_DEVICE_CUDA };

struct tw_tensor {
    enum tw_dtype dtype;
    enum tw_device device;
    int ndim;                // 1..TW_MAX_DIMS
    int64_t ne[TW_MAX_DIMS]; // shape, outermost first; 1 past ndim
    size_t nb[TW_MAX_DIMS];  // stride of each dimension in bytes; the last is the row's
                             // element (block) stride, the others are byte distances
    void *data;
    const char *name; // for messages; may be NULL
};

// A contiguous tensor of `ndim` dims over `data`. The last dimension must be a multiple of
// the dtype's block size and the total size must fit size_t: returns 0, or TW_EINVAL /
// TW_EOVERFLOW with a message naming `name` (or "tensor").
int tw_tensor_init(struct tw_tensor *t, enum tw_dtype dtype, int ndim, const int64_t *shape,
                   void *data, const char *name);
// Shorthands for contiguous f32 tensors whose shape is known to be valid (asserted).
struct tw_tensor tw_tensor_f32_1d(float *data, int64_t n0);
struct tw_tensor tw_tensor_f32_2d(float *data, int64_t n0, int64_t n1);
struct tw_tensor tw_tensor_f32_3d(float *data, int64_t n0, int64_t n1, int64_t n2);

int64_t tw_tensor_nelem(const struct tw_tensor *t);
// Rows: the product of every dimension but the last; the row length is ne[ndim - 1].
int64_t tw_tensor_nrows(const struct tw_tensor *t);
int64_t tw_tensor_ncols(const struct tw_tensor *t);
// Bytes of one contiguous row of the last dimension.
size_t tw_tensor_row_bytes(const struct tw_tensor *t);
// Total bytes of a contiguous tensor.
size_t tw_tensor_nbytes(const struct tw_tensor *t);
bool tw_tensor_is_contiguous(const struct tw_tensor *t);
// Row r (0 <= r < nrows) of a tensor whose rows are evenly spaced (contiguous up to the
// last dimension's stride); asserted.
void *tw_tensor_row(const struct tw_tensor *t, int64_t r);
// Rows [r0, r0 + n) of the first dimension as a view (same dtype and device).
struct tw_tensor tw_tensor_slice(const struct tw_tensor *t, int64_t r0, int64_t n);
// The same data seen with another contiguous shape of the same element count (asserted).
struct tw_tensor tw_tensor_reshape(const struct tw_tensor *t, int ndim, const int64_t *shape);
// "f32 (4, 64)" into buf.
const char *tw_tensor_describe(const struct tw_tensor *t, char *buf, size_t cap);

#endif
