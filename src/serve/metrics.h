// tw_metrics, the Prometheus metrics registry of `twin serve`: counters, gauges (set or read by
// a callback at render time) and histograms, each with up to three labels, rendered in the
// text exposition format 0.0.4 for GET /metrics. One mutex per registry makes every call safe
// from any thread; the registry owns its metrics, which live until tw_metrics_free.
#ifndef TW_SERVE_METRICS_H
#define TW_SERVE_METRICS_H

#include <stddef.h>

#include "base/str.h"

#define TW_METRICS_MAX_LABELS 3   // label names per metric
#define TW_METRICS_MAX_BOUNDS 64  // histogram bucket bounds, +Inf not counted
#define TW_METRICS_MAX_TUPLES 256 // distinct label-value tuples per metric, see tw_metric_add

typedef struct tw_metrics tw_metrics;
typedef struct tw_metric tw_metric;

// An empty registry in *out (free with tw_metrics_free). 0, TW_ENOMEM or TW_EIO.
int tw_metrics_new(tw_metrics **out);
// Frees the registry and every metric in it (handles become invalid). NULL is a no-op.
void tw_metrics_free(tw_metrics *m);

// Registration. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new to the registry; the
// n_labels (0..3) label names must match [a-zA-Z_][a-zA-Z0-9_]*, not start with "__", be
// distinct, and not be "le" for a histogram. help may be NULL (empty). Strings are copied.
// Returns 0 and sets *out to a handle owned by the registry, or TW_EINVAL (a bad name, with a
// message naming it), TW_EEXIST (name taken) or TW_ENOMEM, with *out set to NULL. A metric
// without labels exists at once and renders 0; one with labels renders a sample per tuple
// of label values, created on first use.
int tw_metrics_counter(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                       const char *const *label_names, tw_metric **out);
int tw_metrics_gauge(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                     const char *const *label_names, tw_metric **out);
// bounds: n_bounds (0..64) finite upper bounds, strictly increasing; "+Inf" is implicit.
int tw_metrics_histogram(tw_metrics *m, const char *name, const char *help, size_t n_labels,
                         const char *const *label_names, const double *bounds, size_t n_bounds,
                         tw_metric **out);
// A gauge without labels whose value is fn(ud), read at each render. fn is called without the
// registry's lock held (it may take its own locks, even ones held around tw_metric_* calls),
// possibly from several rendering threads at once; ud must outlive the registry.
int tw_metrics_gauge_fn(tw_metrics *m, const char *name, const char *help, double (*fn)(void *),
                        void *ud);

// Updates. label_values holds one string per label name (NULL when there are none); the
// values are copied when a tuple is first seen. Once a metric has TW_METRICS_MAX_TUPLES
// tuples, a new tuple is counted under the tuple whose every value is "other" (one more
// sample), so a client sending arbitrary values cannot grow the registry without bound.
// 0, TW_EINVAL (wrong kind, missing label values, a negative or NaN counter increment) or
// TW_ENOMEM (the sample could not be created; nothing changed).
//
// Counter: adds v >= 0. Gauge: adds v (any sign).
int tw_metric_add(tw_metric *mt, const char *const *label_values, double v);
// Gauge: sets the value to v.
int tw_metric_set(tw_metric *mt, const char *const *label_values, double v);
// Histogram: counts v in the first bucket whose bound is >= v (+Inf when none) and adds it to
// the sum.
int tw_metric_observe(tw_metric *mt, const char *const *label_values, double v);

// Appends the exposition text of every metric, in registration order, samples in order of
// first use: "# HELP", "# TYPE", then the samples; histograms as cumulative name_bucket{...,
// le="b"} lines ending with le="+Inf", then name_sum and name_count. Integers print without
// exponent, other numbers round-trip ("%.17g" at most); NaN and infinities as NaN, +Inf, -Inf.
// 0, or TW_ENOMEM with out as it was.
int tw_metrics_render(tw_metrics *m, tw_str *out);

#endif
