// Implements metrics.h. A registry is a vector of metrics under one mutex; a metric is a
// vector of samples (one per label-value tuple, first-use order) plus a map from the tuple's
// key (the values, each followed by a NUL) to the sample's index. Names, help, bounds and the
// gauge callback never change after registration, so they are read without the lock.
#include "serve/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/vec.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_GAUGE_FN, KIND_HISTOGRAM };
static const char *const kind_names[] = { "counter", "gauge", "gauge", "histogram" };

struct sample {
    char *key;   // the label values, each followed by a NUL
    size_t klen; // bytes in key
    // Counter, gauge: v[0]. Histogram: v[i] counts bounds[i-1] < x <= bounds[i] (bucket i
    // alone, not cumulative), v[n_bounds] the count (+Inf included), v[n_bounds + 1] the sum.
    double v[];
};

struct tw_metric {
    tw_metrics *reg;
    enum kind kind;
    char *name, *help;
    size_t n_labels;
    char *labels[TW_METRICS_MAX_LABELS];
    double *bounds;
    size_t n_bounds;
    double (*fn)(void *);
    void *ud;
    tw_vec samples; // struct sample *, under reg->mu
    tw_map index;   // key -> index in samples, under reg->mu
};

struct tw_metrics {
    pthread_mutex_t mu;
    tw_vec metrics; // tw_metric *, registration order
};

// ---- names and values

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (colon && c == ':')))
            return false;
    }
    return true;
}

// Prometheus' number syntax: integers without exponent, else the shortest of %.15g / %.17g
// that reads back as v.
static void format_num(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "NaN");
    else if (isinf(v))
        snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    else if (v == trunc(v) && fabs(v) < 1e18)
        snprintf(buf, cap, "%.0f", v + 0.0); // + 0.0 turns -0 into 0
    else if (snprintf(buf, cap, "%.15g", v), strtod(buf, NULL) != v)
        snprintf(buf, cap, "%.17g", v);
}

// Appends s with backslash and newline escaped, and the double quote too when quote is set.
static int put_escaped(tw_str *out, const char *s, bool quote)
{
    int rc = 0;
    for (; *s && !rc; s++) {
        if (*s == '\\')
            rc = tw_str_puts(out, "\\\\");
        else if (*s == '\n')
            rc = tw_str_puts(out, "\\n");
        else if (*s == '"' && quote)
            rc = tw_str_puts(out, "\\\"");
        else
            rc = tw_str_putc(out, *s);
    }
    return rc;
}

// ---- registry and registration

int tw_metrics_new(tw_metrics **out)
{
    *out = NULL;
    tw_metrics *m = tw_calloc(1, sizeof *m);
    if (!m)
        return tw_error_set(TW_ENOMEM, "metrics: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        tw_free(m);
        return tw_error_set(TW_EIO, "metrics: cannot create a mutex");
    }
    tw_vec_init(&m->metrics, sizeof(tw_metric *));
    *out = m;
    return 0;
}

static void metric_free(tw_metric *mt)
{
    if (!mt)
        return;
    for (size_t i = 0; i < mt->samples.len; i++) {
        struct sample *s = TW_VEC_AT(&mt->samples, struct sample *, i);
        tw_free(s->key);
        tw_free(s);
    }
    tw_vec_free(&mt->samples);
    tw_map_free(&mt->index);
    for (size_t i = 0; i < mt->n_labels; i++)
        tw_free(mt->labels[i]);
    tw_free(mt->name);
    tw_free(mt->help);
    tw_free(mt->bounds);
    tw_free(mt);
}

void tw_metrics_free(tw_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->metrics.len; i++)
        metric_free(TW_VEC_AT(&m->metrics, tw_metric *, i));
    tw_vec_free(&m->metrics);
    pthread_mutex_destroy(&m->mu);
    tw_free(m);
}

static int check_names(const char *name, enum kind kind, size_t n_labels,
                       const char *const *labels)
{
    if (!name_ok(name, true))
        return tw_error_set(TW_EINVAL, "metrics: bad metric name \"%s\"", name ? name : "");
    if (n_labels > TW_METRICS_MAX_LABELS || (n_labels && !labels))
        return tw_error_set(TW_EINVAL, "metrics: %s: %zu labels (at most %d)", name, n_labels,
                            TW_METRICS_MAX_LABELS);
    for (size_t i = 0; i < n_labels; i++) {
        const char *l = labels[i];
        if (!name_ok(l, false) || strncmp(l, "__", 2) == 0 ||
            (kind == KIND_HISTOGRAM && strcmp(l, "le") == 0))
            return tw_error_set(TW_EINVAL, "metrics: %s: bad label name \"%s\"", name, l ? l : "");
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j], l) == 0)
                return tw_error_set(TW_EINVAL, "metrics: %s: label \"%s\" named twice", name, l);
    }
    return 0;
}

static int sample_find(tw_metric *mt, const char *const *values, struct sample **out);

// A metric not yet visible to other threads, or TW_EINVAL / TW_ENOMEM.
static int metric_build(enum kind kind, const char *name, const char *help, size_t n_labels,
                        const char *const *labels, const double *bounds, size_t n_bounds,
                        tw_metric **out)
{
    int rc = check_names(name, kind, n_labels, labels);
    if (rc)
        return rc;
    if (n_bounds > TW_METRICS_MAX_BOUNDS || (n_bounds && !bounds))
        return tw_error_set(TW_EINVAL, "metrics: %s: %zu bucket bounds (at most %d)", name,
                            n_bounds, TW_METRICS_MAX_BOUNDS);
    for (size_t i = 0; i < n_bounds; i++)
        if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
            return tw_error_set(TW_EINVAL, "metrics: %s: bound %zu not finite or not increasing",
                                name, i);
    tw_metric *mt = tw_calloc(1, sizeof *mt);
    if (!mt)
        return tw_error_set(TW_ENOMEM, "metrics: %s: out of memory", name);
    mt->kind = kind;
    mt->n_labels = n_labels;
    mt->n_bounds = n_bounds;
    tw_vec_init(&mt->samples, sizeof(struct sample *));
    tw_map_init(&mt->index, TW_MAP_STR);
    bool ok = (mt->name = tw_strdup(name)) && (mt->help = tw_strdup(help ? help : ""));
    for (size_t i = 0; i < n_labels; i++)
        ok = ok && (mt->labels[i] = tw_strdup(labels[i]));
    if (ok && n_bounds && (ok = (mt->bounds = tw_malloc_array(n_bounds, sizeof *bounds))))
        memcpy(mt->bounds, bounds, n_bounds * sizeof *bounds);
    struct sample *s;
    // No labels: the one sample exists from the start, so the metric renders 0 at once.
    if (!ok || (kind != KIND_GAUGE_FN && n_labels == 0 && sample_find(mt, NULL, &s) != 0)) {
        metric_free(mt);
        return tw_error_set(TW_ENOMEM, "metrics: %s: out of memory", name);
    }
    *out = mt;
    return 0;
}

// Adds a built metric to the registry unless its name is taken (then frees it). Everything
// written to mt before the unlock is seen by any thread that later takes the lock.
static int metric_publish(tw_metrics *m, tw_metric *mt, tw_metric **out)
{
    int rc = 0;
    mt->reg = m;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->metrics.len && !rc; i++)
        if (strcmp(TW_VEC_AT(&m->metrics, tw_metric *, i)->name, mt->name) == 0)
            rc = tw_error_set(TW_EEXIST, "metrics: %s: registered twice", mt->name);
    if (!rc)
        rc = tw_vec_push(&m->metrics, &mt);
    pthread_mutex_unlock(&m->mu);
    if (rc)
        metric_free(mt);
    else if (out)
        *out = mt;
    return rc;
}

static int metric_add(tw_metrics *m, enum kind kind, const char *name, const char *help,
                      size_t n_labels, const char *const *labels, const double *bounds,
                      size_t n_bounds, tw_metric **out)
{
    tw_metric *mt = NULL;
    *out = NULL;
    int rc = metric_build(kind, name, help, n_labels, labels, bounds, n_bounds, &mt);
    return rc ? rc : metric_publish(m, mt, out);
}

int tw_metrics_counter(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                       const char *const *label_names, tw_metric **out)
{
    return metric_add(m, KIND_COUNTER, name, help, n_labels, label_names, NULL, 0, out);
}

int tw_metrics_gauge(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                     const char *const *label_names, tw_metric **out)
{
    return metric_add(m, KIND_GAUGE, name, help, n_labels, label_names, NULL, 0, out);
}

int tw_metrics_histogram(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                         const char *const *label_names, const double *bounds, size_t n_bounds,
                         tw_metric **out)
{
    return metric_add(m, KIND_HISTOGRAM, name, help, n_labels, label_names, bounds, n_bounds, out);
}

int tw_metrics_gauge_fn(tw_metrics *m, const char *name, const char *help, double (*fn)(void *),
                        void *ud)
{
    if (!fn)
        return tw_error_set(TW_EINVAL, "metrics: %s: no callback", name ? name : "");
    tw_metric *mt = NULL;
    int rc = metric_build(KIND_GAUGE_FN, name, help, 0, NULL, NULL, 0, &mt);
    if (rc)
        return rc;
    mt->fn = fn;
    mt->ud = ud;
    return metric_publish(m, mt, NULL);
}

// ---- samples and updates

// Looks up the sample of a tuple (the "other" tuple past the limit), creating it when new.
// Called under reg->mu, or before the metric is published.
static int sample_find(tw_metric *mt, const char *const *values, struct sample **out)
{
    if (mt->n_labels && !values)
        return tw_error_set(TW_EINVAL, "metrics: %s: no label values", mt->name);
    size_t klen = 0, len[TW_METRICS_MAX_LABELS];
    for (size_t i = 0; i < mt->n_labels; i++) {
        if (!values[i])
            return tw_error_set(TW_EINVAL, "metrics: %s: label %s is NULL", mt->name,
                                mt->labels[i]);
        len[i] = strlen(values[i]);
        if (tw_add_overflow(klen, len[i] + 1, &klen))
            return tw_error_set(TW_EOVERFLOW, "metrics: %s: label values too long", mt->name);
    }
    char *key = tw_malloc(klen ? klen : 1);
    if (!key)
        return tw_error_set(TW_ENOMEM, "metrics: %s: out of memory", mt->name);
    for (size_t i = 0, at = 0; i < mt->n_labels; at += len[i++] + 1)
        memcpy(key + at, values[i], len[i] + 1);
    uint64_t idx;
    if (!tw_map_get_str(&mt->index, key, klen, &idx) && mt->samples.len >= TW_METRICS_MAX_TUPLES) {
        tw_free(key); // full: fold into "other" (each value "other" and its NUL)
        klen = 6 * mt->n_labels;
        if (!(key = tw_malloc(klen)))
            return tw_error_set(TW_ENOMEM, "metrics: %s: out of memory", mt->name);
        for (size_t i = 0; i < mt->n_labels; i++)
            memcpy(key + 6 * i, "other", 6);
    }
    if (tw_map_get_str(&mt->index, key, klen, &idx)) {
        tw_free(key);
        *out = TW_VEC_AT(&mt->samples, struct sample *, idx);
        return 0;
    }
    size_t nv = mt->kind == KIND_HISTOGRAM ? mt->n_bounds + 2 : 1;
    struct sample *s = tw_calloc(1, sizeof *s + nv * sizeof(double));
    int rc = s ? tw_vec_push(&mt->samples, &s) : TW_ENOMEM;
    if (rc == 0 && (rc = tw_map_put_str(&mt->index, key, klen, mt->samples.len - 1)) != 0)
        mt->samples.len--;
    if (rc) {
        tw_free(s);
        tw_free(key);
        return tw_error_set(TW_ENOMEM, "metrics: %s: out of memory", mt->name);
    }
    s->key = key;
    s->klen = klen;
    *out = s;
    return 0;
}

static int update(tw_metric *mt, const char *const *values, double v, enum kind want,
                  const char *what)
{
    bool gauge_add = want == KIND_COUNTER && mt->kind == KIND_GAUGE;
    if (mt->kind != want && !gauge_add)
        return tw_error_set(TW_EINVAL, "metrics: %s: cannot %s a %s", mt->name, what,
                            kind_names[mt->kind]);
    if (mt->kind == KIND_COUNTER && !(v >= 0))
        return tw_error_set(TW_EINVAL, "metrics: %s: counter increment %g", mt->name, v);
    struct sample *s;
    pthread_mutex_lock(&mt->reg->mu);
    int rc = sample_find(mt, values, &s);
    if (rc == 0 && mt->kind == KIND_HISTOGRAM) {
        size_t b = 0;
        while (b < mt->n_bounds && !(v <= mt->bounds[b]))
            b++;
        if (b < mt->n_bounds)
            s->v[b] += 1;
        s->v[mt->n_bounds] += 1;
        s->v[mt->n_bounds + 1] += v;
    } else if (rc == 0) {
        s->v[0] = want == KIND_GAUGE ? v : s->v[0] + v;
    }
    pthread_mutex_unlock(&mt->reg->mu);
    return rc;
}

int tw_metric_add(tw_metric *mt, const char *const *label_values, double v)
{
    return update(mt, label_values, v, KIND_COUNTER, "add to");
}

int tw_metric_set(tw_metric *mt, const char *const *label_values, double v)
{
    return update(mt, label_values, v, KIND_GAUGE, "set");
}

int tw_metric_observe(tw_metric *mt, const char *const *label_values, double v)
{
    return update(mt, label_values, v, KIND_HISTOGRAM, "observe into");
}

// ---- rendering

// One sample line: name[suffix]{labels[,le="le"]} value
static int put_line(tw_str *out, const tw_metric *mt, const char *suffix, const char *key,
                    const char *le, double v)
{
    char num[40];
    int rc = tw_str_puts(out, mt->name);
    rc = rc ? rc : tw_str_puts(out, suffix);
    if (mt->n_labels || le)
        rc = rc ? rc : tw_str_putc(out, '{');
    for (size_t i = 0; i < mt->n_labels && !rc; i++, key += strlen(key) + 1) {
        rc = tw_str_printf(out, "%s%s=\"", i ? "," : "", mt->labels[i]);
        rc = rc ? rc : put_escaped(out, key, true);
        rc = rc ? rc : tw_str_putc(out, '"');
    }
    if (le && !rc)
        rc = tw_str_printf(out, "%sle=\"%s\"", mt->n_labels ? "," : "", le);
    if (mt->n_labels || le)
        rc = rc ? rc : tw_str_putc(out, '}');
    format_num(num, sizeof num, v);
    return rc ? rc : tw_str_printf(out, " %s\n", num);
}

static int put_metric(tw_str *out, const tw_metric *mt, double fn_value)
{
    int rc = tw_str_printf(out, "# HELP %s ", mt->name);
    rc = rc ? rc : put_escaped(out, mt->help, false);
    rc = rc ? rc : tw_str_printf(out, "\n# TYPE %s %s\n", mt->name, kind_names[mt->kind]);
    if (mt->kind == KIND_GAUGE_FN)
        return rc ? rc : put_line(out, mt, "", "", NULL, fn_value);
    for (size_t i = 0; i < mt->samples.len && !rc; i++) {
        const struct sample *s = TW_VEC_AT(&mt->samples, struct sample *, i);
        if (mt->kind != KIND_HISTOGRAM) {
            rc = put_line(out, mt, "", s->key, NULL, s->v[0]);
            continue;
        }
        double cum = 0;
        char le[40];
        for (size_t b = 0; b < mt->n_bounds && !rc; b++) {
            cum += s->v[b];
            format_num(le, sizeof le, mt->bounds[b]);
            rc = put_line(out, mt, "_bucket", s->key, le, cum);
        }
        rc = rc ? rc : put_line(out, mt, "_bucket", s->key, "+Inf", s->v[mt->n_bounds]);
        rc = rc ? rc : put_line(out, mt, "_sum", s->key, NULL, s->v[mt->n_bounds + 1]);
        rc = rc ? rc : put_line(out, mt, "_count", s->key, NULL, s->v[mt->n_bounds]);
    }
    return rc;
}

int tw_metrics_render(tw_metrics *m, tw_str *out)
{
    // The callbacks run outside the lock (they may take locks of their own that are held
    // around updates): take the list of metrics, call them, then render under the lock.
    // Metrics are never removed, so the pointers stay valid.
    pthread_mutex_lock(&m->mu);
    size_t n = m->metrics.len;
    tw_metric **list = tw_malloc_array(n ? n : 1, sizeof *list);
    if (list && n)
        memcpy(list, m->metrics.data, n * sizeof *list);
    pthread_mutex_unlock(&m->mu);
    double *vals = tw_malloc_array(n ? n : 1, sizeof *vals);
    if (!list || !vals) {
        tw_free(list);
        tw_free(vals);
        return tw_error_set(TW_ENOMEM, "metrics: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        vals[i] = list[i]->kind == KIND_GAUGE_FN ? list[i]->fn(list[i]->ud) : 0;
    size_t start = tw_str_len(out);
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < n && !rc; i++)
        rc = put_metric(out, list[i], vals[i]);
    pthread_mutex_unlock(&m->mu);
    tw_free(list);
    tw_free(vals);
    if (rc) {
        tw_str_truncate(out, start);
        return tw_error_set(rc, "metrics: out of memory while rendering");
    }
    return 0;
}
