// tw_vec, the dynamic array: elements of one size in one contiguous block.
//
// Growth doubles the capacity. Amortised analysis: starting from capacity c0 and doubling,
// reaching N elements reallocates at capacities c0, 2c0, 4c0, ... < N, copying at most
// c0 + 2c0 + ... + N/2 < N elements in all, so N appends copy fewer than 2N elements and each
// append costs O(1) amortised. With a constant increment c the k-th reallocation copies k*c
// elements; N appends do N/c of them and copy c*(1 + 2 + ... + N/c) ~ N^2/2c elements:
// O(N) per append. (bench/vec_growth measures both; docs/perf.md has the table.)
//
// Shrinking halves the capacity only when the array falls to a quarter of it. Shrinking at a
// half would let an alternating push/pop at a capacity boundary reallocate (and copy n
// elements) on every operation; with the quarter rule, after a shrink to capacity C the array
// holds C/2 elements and needs C/2 more pushes to grow or C/4 more pops to shrink again, so
// every reallocation is paid for by Theta(C) cheap operations (the hysteresis of Redis' dict).
//
// Sizes are overflow-checked. When an allocation fails the function returns TW_ENOMEM and
// the array is exactly as it was. A failed shrink is not an error: the array keeps its block.
#ifndef TW_VEC_H
#define TW_VEC_H

#include <stddef.h>
#include <stdint.h>

// How the capacity changes. The default (all zero) is the policy described above; the
// others exist so that bench/vec_growth can measure the policies it compares.
struct tw_vec_policy {
    size_t grow_add;  // > 0: grow by this many elements instead of multiplying
    uint8_t grow_num; // multiply by grow_num / grow_den (default 2 / 1)
    uint8_t grow_den;
    uint8_t shrink_div; // shrink to half when len <= cap / shrink_div (default 4; 0: never)
    size_t min_cap;     // the smallest capacity allocated (default 8 elements)
};

typedef struct tw_vec {
    void *data; // len elements of esize bytes; NULL while cap == 0
    size_t len; // elements in use
    size_t cap; // elements allocated
    size_t esize;
    const struct tw_vec_policy *policy; // NULL: the default policy
} tw_vec;

// An empty array of elements of esize bytes (esize > 0). Allocates nothing.
void tw_vec_init(tw_vec *v, size_t esize);
// Same, with a growth policy that must outlive the array (benchmarks only).
void tw_vec_init_policy(tw_vec *v, size_t esize, const struct tw_vec_policy *policy);
// Frees the block; the array is empty and reusable afterwards.
void tw_vec_free(tw_vec *v);

// Makes room for at least n elements in all (never shrinks).
int tw_vec_reserve(tw_vec *v, size_t n);
// Sets the length to n; new elements are zero bytes. Shrinks by the quarter rule.
int tw_vec_resize(tw_vec *v, size_t n);
// Frees unused capacity (cap = len).
int tw_vec_shrink_to_fit(tw_vec *v);
// Length 0, capacity unchanged.
void tw_vec_clear(tw_vec *v);

// Appends one element (copied from elem) / n elements from src.
int tw_vec_push(tw_vec *v, const void *elem);
int tw_vec_append(tw_vec *v, const void *src, size_t n);
// Appends n zeroed elements and sets *out to the first of them (valid until the next change).
int tw_vec_grow(tw_vec *v, size_t n, void **out);
// Removes the last element, copying it to out when out is not NULL. TW_EINVAL when empty.
int tw_vec_pop(tw_vec *v, void *out);

// Inserts elem at index i (0 <= i <= len), moving the tail up by one.
int tw_vec_insert(tw_vec *v, size_t i, const void *elem);
// Removes the element at i (copied to out when out is not NULL), moving the tail down.
int tw_vec_remove(tw_vec *v, size_t i, void *out);
// Removes the element at i by moving the last element into its place: O(1), order not kept.
int tw_vec_swap_remove(tw_vec *v, size_t i, void *out);

// The address of element i (i < len); no bounds check in release builds (assert).
void *tw_vec_at(const tw_vec *v, size_t i);

// Typed access: TW_VEC_AT(&v, int32_t, i).
#define TW_VEC_AT(v, type, i) (((type *)(v)->data)[(i)])

#endif
