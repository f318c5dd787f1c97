// Implements vec.h: growth by the policy (doubling by default), shrink at a quarter,
// memmove for the middle, and no change to the array when an allocation fails.
#include "base/vec.h"

#include <assert.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

static const struct tw_vec_policy default_policy = {
    .grow_add = 0, .grow_num = 2, .grow_den = 1, .shrink_div = 4, .min_cap = 8
};

static const struct tw_vec_policy *policy_of(const tw_vec *v)
{
    return v->policy ? v->policy : &default_policy;
}

void tw_vec_init(tw_vec *v, size_t esize)
{
    tw_vec_init_policy(v, esize, NULL);
}

void tw_vec_init_policy(tw_vec *v, size_t esize, const struct tw_vec_policy *policy)
{
    assert(esize > 0);
    v->data = NULL;
    v->len = 0;
    v->cap = 0;
    v->esize = esize;
    v->policy = policy;
}

void tw_vec_free(tw_vec *v)
{
    tw_free(v->data);
    v->data = NULL;
    v->len = 0;
    v->cap = 0;
}

// Moves the block to exactly cap elements. On failure nothing changes.
static int set_cap(tw_vec *v, size_t cap)
{
    size_t bytes;
    if (tw_mul_overflow(cap, v->esize, &bytes))
        return tw_error_set(TW_EOVERFLOW, "array of %zu elements of %zu bytes: size overflow", cap,
                            v->esize);
    if (cap == 0) {
        tw_free(v->data);
        v->data = NULL;
        v->cap = 0;
        return 0;
    }
    void *p = tw_realloc(v->data, bytes);
    if (!p)
        return tw_error_set(TW_ENOMEM, "array: cannot allocate %zu bytes", bytes);
    v->data = p;
    v->cap = cap;
    return 0;
}

// The capacity after growing from cap by the policy, at least `need`.
static int next_cap(const tw_vec *v, size_t need, size_t *out)
{
    const struct tw_vec_policy *p = policy_of(v);
    size_t cap = v->cap;
    size_t min_cap = p->min_cap ? p->min_cap : 1;
    while (cap < need) {
        size_t next;
        if (cap < min_cap) {
            next = min_cap;
        } else if (p->grow_add) {
            if (tw_add_overflow(cap, p->grow_add, &next))
                next = need;
        } else {
            // cap * num / den, split so the product cannot wrap; when it would overflow, or
            // would not grow, take exactly what is needed.
            size_t num = p->grow_num ? p->grow_num : 2, den = p->grow_den ? p->grow_den : 1;
            size_t whole;
            if (tw_mul_overflow(cap / den, num, &whole) ||
                tw_add_overflow(whole, cap % den * num / den, &next) || next <= cap)
                next = need;
        }
        cap = next;
    }
    size_t bytes;
    if (tw_mul_overflow(cap, v->esize, &bytes))
        return tw_error_set(TW_EOVERFLOW, "array of %zu elements of %zu bytes: size overflow",
                            need, v->esize);
    *out = cap;
    return 0;
}

int tw_vec_reserve(tw_vec *v, size_t n)
{
    if (n <= v->cap)
        return 0;
    size_t cap;
    int rc = next_cap(v, n, &cap);
    if (rc)
        return rc;
    return set_cap(v, cap);
}

// After the length fell: halve the capacity while the array is at most a quarter full.
static void maybe_shrink(tw_vec *v)
{
    const struct tw_vec_policy *p = policy_of(v);
    size_t min_cap = p->min_cap ? p->min_cap : 1;
    if (!p->shrink_div)
        return;
    size_t cap = v->cap;
    while (cap > min_cap && v->len <= cap / p->shrink_div)
        cap /= 2;
    if (cap < min_cap)
        cap = min_cap;
    if (cap < v->cap && set_cap(v, cap) != 0)
        tw_error_clear(); // keeping the larger block is always correct
}

static int grow_len(tw_vec *v, size_t n)
{
    size_t need;
    if (tw_add_overflow(v->len, n, &need))
        return tw_error_set(TW_EOVERFLOW, "array: %zu + %zu elements overflow", v->len, n);
    return tw_vec_reserve(v, need);
}

static char *elem_ptr(const tw_vec *v, size_t i)
{
    return (char *)v->data + i * v->esize;
}

int tw_vec_push(tw_vec *v, const void *elem)
{
    int rc = grow_len(v, 1);
    if (rc)
        return rc;
    memcpy(elem_ptr(v, v->len), elem, v->esize);
    v->len++;
    return 0;
}

int tw_vec_append(tw_vec *v, const void *src, size_t n)
{
    if (n == 0)
        return 0;
    int rc = grow_len(v, n);
    if (rc)
        return rc;
    memcpy(elem_ptr(v, v->len), src, n * v->esize);
    v->len += n;
    return 0;
}

int tw_vec_grow(tw_vec *v, size_t n, void **out)
{
    int rc = grow_len(v, n);
    if (rc)
        return rc;
    if (n == 0) { // nothing to hand out (and no NULL + 0 when nothing is allocated)
        *out = v->data ? elem_ptr(v, v->len) : NULL;
        return 0;
    }
    *out = elem_ptr(v, v->len);
    memset(*out, 0, n * v->esize);
    v->len += n;
    return 0;
}

int tw_vec_pop(tw_vec *v, void *out)
{
    if (v->len == 0)
        return tw_error_set(TW_EINVAL, "array: pop from an empty array");
    v->len--;
    if (out)
        memcpy(out, elem_ptr(v, v->len), v->esize);
    maybe_shrink(v);
    return 0;
}

int tw_vec_insert(tw_vec *v, size_t i, const void *elem)
{
    if (i > v->len)
        return tw_error_set(TW_EINVAL, "array: insert at %zu past the length %zu", i, v->len);
    int rc = grow_len(v, 1);
    if (rc)
        return rc;
    memmove(elem_ptr(v, i + 1), elem_ptr(v, i), (v->len - i) * v->esize);
    memcpy(elem_ptr(v, i), elem, v->esize);
    v->len++;
    return 0;
}

int tw_vec_remove(tw_vec *v, size_t i, void *out)
{
    if (i >= v->len)
        return tw_error_set(TW_EINVAL, "array: remove at %zu, length %zu", i, v->len);
    if (out)
        memcpy(out, elem_ptr(v, i), v->esize);
    memmove(elem_ptr(v, i), elem_ptr(v, i + 1), (v->len - i - 1) * v->esize);
    v->len--;
    maybe_shrink(v);
    return 0;
}

int tw_vec_swap_remove(tw_vec *v, size_t i, void *out)
{
    if (i >= v->len)
        return tw_error_set(TW_EINVAL, "array: remove at %zu, length %zu", i, v->len);
    if (out)
        memcpy(out, elem_ptr(v, i), v->esize);
    if (i != v->len - 1)
        memcpy(elem_ptr(v, i), elem_ptr(v, v->len - 1), v->esize);
    v->len--;
    maybe_shrink(v);
    return 0;
}

int tw_vec_resize(tw_vec *v, size_t n)
{
    if (n > v->len) {
        void *tail;
        return tw_vec_grow(v, n - v->len, &tail);
    }
    v->len = n;
    maybe_shrink(v);
    return 0;
}

int tw_vec_shrink_to_fit(tw_vec *v)
{
    if (v->cap == v->len)
        return 0;
    return set_cap(v, v->len);
}

void tw_vec_clear(tw_vec *v)
{
    v->len = 0;
}

void *tw_vec_at(const tw_vec *v, size_t i)
{
    assert(i < v->len);
    return elem_ptr(v, i);
}
