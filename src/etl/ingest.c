// Implements ingest.h: source dispatch, the sink that standardises, deduplicates and writes
// documents in batched transactions, and the run's summary.
#define _GNU_SOURCE
#include "etl/ingest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "base/progress.h"
#include "base/sha256.h"
#include "etl/extract.h"
#include "etl/source.h"
#include "store/warehouse.h"
#include "text/minhash.h"
#include "text/utf8.h"
#include "twin_config.h"

#define MAX_ISSUES 1000
#define N_PERM     128

// ---- standardisation

int tw_standardize(const char *text, size_t len, bool code, tw_str *out, int64_t *n_invalid)
{
    // 1. UTF-8: invalid subparts to U+FFFD (counted); controls but TAB, LF, CR dropped.
    tw_str clean;
    tw_str_init(&clean);
    int rc = 0;
    for (size_t i = 0; i < len && !rc;) {
        uint32_t cp;
        size_t n = tw_utf8_decode(text + i, len - i, &cp);
        bool invalid =
            cp == 0xFFFD && !(n == 3 && (uint8_t)text[i] == 0xEF && (uint8_t)text[i + 1] == 0xBF &&
                              (uint8_t)text[i + 2] == 0xBD);
        if (invalid && n_invalid)
            (*n_invalid)++;
        bool drop = (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0x7F ||
                    (cp == 0xFEFF && i == 0);
        if (!drop) {
            char buf[4];
            size_t m = tw_utf8_encode(cp, buf);
            rc = tw_str_append(&clean, buf, m);
        }
        i += n;
    }
    // 2. NFC.
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t nlen = 0;
    if (!rc && tw_str_len(&clean)) {
        nlen = utf8proc_map((const utf8proc_uint8_t *)tw_str_cstr(&clean),
                            (utf8proc_ssize_t)tw_str_len(&clean), &nfc,
                            UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (nlen < 0)
            rc = tw_error_set(TW_ENOMEM, "standardising: %s", utf8proc_errmsg(nlen));
    }
    tw_str_free(&clean);
    if (rc)
        return rc;
    // 3. Lines: CR LF / CR to LF, trailing blanks removed, blank lines limited.
    size_t start = tw_str_len(out);
    const char *p = (const char *)nfc, *end = p + (nlen > 0 ? nlen : 0);
    int pending_blank = 0; // blank lines seen since the last text line
    bool any = false;
    while (p < end && !rc) {
        const char *e = p;
        while (e < end && *e != '\n' && *e != '\r')
            e++;
        const char *next = e < end && *e == '\r' && e + 1 < end && e[1] == '\n' ? e + 2
                           : e < end                                            ? e + 1
                                                                                : e;
        const char *b = p, *t = e;
        while (t > b && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (!code)
            while (b < t && (*b == ' ' || *b == '\t'))
                b++;
        if (b == t) {
            pending_blank++;
        } else {
            if (any) {
                int blanks = code ? pending_blank : (pending_blank > 0 ? 1 : 0);
                for (int k = 0; k <= blanks && !rc; k++)
                    rc = tw_str_putc(out, '\n');
            }
            pending_blank = 0;
            any = true;
            if (code) {
                rc = rc ? rc : tw_str_append(out, b, (size_t)(t - b));
            } else {
                bool space = false;
                for (const char *q = b; q < t && !rc; q++) {
                    if (*q == ' ' || *q == '\t') {
                        space = true;
                        continue;
                    }
                    if (space)
                        rc = tw_str_putc(out, ' ');
                    space = false;
                    rc = rc ? rc : tw_str_putc(out, *q);
                }
            }
        }
        p = next;
    }
    if (!rc && code && any)
        rc = tw_str_putc(out, '\n');
    free(nfc);
    if (rc)
        tw_str_truncate(out, start);
    return rc;
}

// ---- summary

void tw_ingest_summary_init(struct tw_ingest_summary *s)
{
    memset(s, 0, sizeof *s);
    tw_vec_init(&s->skips, sizeof(struct tw_ingest_count));
    tw_vec_init(&s->failures, sizeof(struct tw_ingest_issue));
    tw_vec_init(&s->dups, sizeof(struct tw_ingest_issue));
}

static void free_issues(tw_vec *v)
{
    for (size_t i = 0; i < v->len; i++) {
        struct tw_ingest_issue *is = tw_vec_at(v, i);
        tw_free(is->uri);
        tw_free(is->message);
    }
    tw_vec_free(v);
}

void tw_ingest_summary_free(struct tw_ingest_summary *s)
{
    for (size_t i = 0; i < s->skips.len; i++)
        tw_free(((struct tw_ingest_count *)tw_vec_at(&s->skips, i))->reason);
    tw_vec_free(&s->skips);
    free_issues(&s->failures);
    free_issues(&s->dups);
}

static json_t *issues_json(const tw_vec *v, const char *key)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < v->len; i++) {
        const struct tw_ingest_issue *is = tw_vec_at(v, i);
        json_array_append_new(a, json_pack("{s:s, s:s}", "uri", is->uri, key, is->message));
    }
    return a;
}

json_t *tw_ingest_summary_json(const struct tw_ingest_summary *s)
{
    json_t *skips = json_object();
    for (size_t i = 0; skips && i < s->skips.len; i++) {
        const struct tw_ingest_count *c = tw_vec_at(&s->skips, i);
        json_object_set_new(skips, c->reason, json_integer(c->n));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:o, s:o}",
                     "found", (json_int_t)s->found, "inserted", (json_int_t)s->inserted, "updated",
                     (json_int_t)s->updated, "unchanged", (json_int_t)s->unchanged, "duplicates",
                     (json_int_t)s->duplicates, "near_duplicates", (json_int_t)s->near_duplicates,
                     "skipped", (json_int_t)s->skipped, "failed", (json_int_t)s->failed,
                     "invalid_utf8", (json_int_t)s->invalid_bytes, "bytes", (json_int_t)s->bytes,
                     "seconds", s->seconds, "skip_reasons", skips, "failures",
                     issues_json(&s->failures, "error"), "duplicates_of",
                     issues_json(&s->dups, "of"));
}

static void add_issue(tw_vec *v, const char *uri, const char *message)
{
    if (v->len >= MAX_ISSUES)
        return;
    struct tw_ingest_issue is = { tw_strdup(uri ? uri : ""), tw_strdup(message ? message : "") };
    if (!is.uri || !is.message || tw_vec_push(v, &is)) {
        tw_free(is.uri);
        tw_free(is.message);
    }
}

// ---- the sink

struct ingest {
    struct tw_home *h;
    const struct tw_ingest_options *opt;
    struct tw_ingest_summary *s;
    tw_minhash *mh;   // NULL: near-duplicate detection off
    const char *kind; // the running source's platform default
    int in_batch;     // documents written in the open transaction
    struct tw_progress bar;
    bool bar_on;
    int64_t done;
    tw_str text;
};

static int flush(struct ingest *in)
{
    if (!in->in_batch)
        return 0;
    in->in_batch = 0;
    int rc = tw_wh_commit(in->h);
    if (rc)
        tw_wh_rollback(in->h);
    return rc;
}

static void sink_skip(void *ud, const char *uri, const char *reason);

static bool is_code(const char *category)
{
    return strcmp(category, TW_DOC_REPOSITORY) == 0;
}

// Near-duplicate of another document (not the one at the same URI, same_seq)? *of gets its seq.
static int near_dup(struct ingest *in, const uint32_t *sig, int64_t same_seq, int64_t *of)
{
    tw_vec hits;
    tw_vec_init(&hits, sizeof(struct tw_minhash_hit));
    int rc = tw_minhash_query_signature(in->mh, sig, -1, &hits);
    *of = 0;
    for (size_t i = 0; !rc && i < hits.len; i++) {
        const struct tw_minhash_hit *hit = tw_vec_at(&hits, i);
        if ((int64_t)hit->id != same_seq) {
            *of = (int64_t)hit->id;
            break;
        }
    }
    tw_vec_free(&hits);
    return rc ? tw_error_set(rc, "out of memory") : 0;
}

static int sink_doc(void *ud, const struct tw_doc_in *d)
{
    struct ingest *in = ud;
    struct tw_ingest_summary *s = in->s;
    s->found++;
    const char *author = d->author && *d->author ? d->author : in->opt->author;
    if (!author) {
        s->failed++;
        add_issue(&s->failures, d->uri, "no author: give --author or map an author field");
        return 0;
    }
    const char *category = d->category         ? d->category
                           : in->opt->category ? in->opt->category
                                               : TW_DOC_ARTICLE;
    const char *platform = in->opt->platform ? in->opt->platform
                           : d->platform     ? d->platform
                                             : in->kind;
    tw_str_clear(&in->text);
    int rc = tw_standardize(d->content, d->content_len, is_code(category), &in->text,
                            &s->invalid_bytes);
    if (rc)
        return rc;
    if (tw_str_len(&in->text) == 0) { // nothing left after standardisation: not a document
        s->found--;
        sink_skip(in, d->uri, "empty");
        return 0;
    }
    uint8_t digest[TW_SHA256_LEN];
    struct tw_wh_doc doc = { 0 };
    tw_sha256(tw_str_cstr(&in->text), tw_str_len(&in->text), digest);
    tw_sha256_hex(digest, doc.sha256);
    struct tw_wh_doc same_uri, same_sha;
    bool have_uri = tw_wh_doc_find_uri(in->h, d->uri, &same_uri) == 0;
    if (tw_wh_doc_find_sha256(in->h, doc.sha256, &same_sha) == 0 &&
        (!have_uri || strcmp(same_sha.id, same_uri.id) != 0)) {
        s->duplicates++;
        add_issue(&s->dups, d->uri, same_sha.id);
        return 0;
    }
    uint32_t sig[N_PERM];
    bool have_sig = false;
    if (in->mh) {
        if ((rc = tw_minhash_signature(in->mh, tw_str_cstr(&in->text), tw_str_len(&in->text), sig,
                                       NULL)))
            return tw_error_set(rc, "out of memory");
        have_sig = true;
        int64_t of;
        if ((rc = near_dup(in, sig, have_uri ? same_uri.seq : -1, &of)))
            return rc;
        if (of) {
            struct tw_wh_doc other;
            s->near_duplicates++;
            add_issue(&s->dups, d->uri,
                      tw_wh_doc_find_seq(in->h, of, &other) == 0 ? other.id : "?");
            return 0;
        }
    }
    if (!in->in_batch && (rc = tw_wh_begin(in->h)))
        return rc;
    char author_id[TW_UUID_LEN + 1], extractor[64];
    char *meta = d->metadata ? json_dumps(d->metadata, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = tw_wh_author_ensure(in->h, author, author_id, NULL);
    enum tw_wh_put what = TW_WH_UNCHANGED;
    if (!rc) {
        memcpy(doc.author_id, author_id, sizeof doc.author_id);
        doc.category = category;
        doc.platform = platform;
        doc.uri = d->uri;
        doc.title = d->title && *d->title ? d->title : NULL;
        doc.content = tw_str_cstr(&in->text);
        doc.content_len = tw_str_len(&in->text);
        doc.metadata = meta;
        doc.published_at = d->published_at;
        doc.fetched_at = (int64_t)time(NULL);
        // The extractor's name and the twin that ran it: documents from an older extractor
        // can be found and ingested again.
        snprintf(extractor, sizeof extractor, "%s/%s", d->extractor ? d->extractor : "unknown",
                 TWIN_VERSION);
        doc.extractor = extractor;
        rc = tw_wh_doc_put(in->h, &doc, have_sig ? sig : NULL, N_PERM, &what);
    }
    free(meta);
    if (rc) {
        tw_wh_rollback(in->h);
        in->in_batch = 0;
        return rc;
    }
    in->in_batch++;
    if (what == TW_WH_INSERTED)
        s->inserted++;
    else if (what == TW_WH_UPDATED)
        s->updated++;
    else
        s->unchanged++;
    if (what != TW_WH_UNCHANGED)
        s->bytes += (int64_t)tw_str_len(&in->text);
    if (have_sig && what == TW_WH_INSERTED) {
        rc = tw_minhash_add_signature(in->mh, (uint64_t)doc.seq, sig);
        if (rc && rc != TW_EEXIST)
            return tw_error_set(rc, "out of memory");
    }
    if (in->in_batch >= (in->opt->batch > 0 ? in->opt->batch : 64))
        return flush(in);
    return 0;
}

static void sink_skip(void *ud, const char *uri, const char *reason)
{
    struct ingest *in = ud;
    struct tw_ingest_summary *s = in->s;
    (void)uri;
    s->skipped++;
    for (size_t i = 0; i < s->skips.len; i++) {
        struct tw_ingest_count *c = tw_vec_at(&s->skips, i);
        if (strcmp(c->reason, reason) == 0) {
            c->n++;
            return;
        }
    }
    struct tw_ingest_count c = { tw_strdup(reason), 1 };
    if (!c.reason || tw_vec_push(&s->skips, &c))
        tw_free(c.reason);
}

static void sink_fail(void *ud, const char *uri, const char *message)
{
    struct ingest *in = ud;
    in->s->failed++;
    add_issue(&in->s->failures, uri, message);
}

static bool sink_seen(void *ud, const char *uri)
{
    struct ingest *in = ud;
    struct tw_wh_doc d;
    return tw_wh_doc_find_uri(in->h, uri, &d) == 0;
}

static void sink_progress(void *ud, int64_t done, int64_t total)
{
    struct ingest *in = ud;
    if (!in->bar_on)
        return;
    if (total > 0 && (uint64_t)total != in->bar.total)
        in->bar.total = (uint64_t)total;
    if (done > in->done) {
        tw_progress_add(&in->bar, (uint64_t)(done - in->done));
        in->done = done;
    }
}

// ---- sources

enum kind { K_WEB, K_GIT, K_FOLDER, K_RECORDS, K_RECORDS_DIR, K_FILE };

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcasecmp(s + n - m, suf) == 0;
}

static bool is_records_file(const char *path)
{
    return has_suffix(path, ".json") || has_suffix(path, ".jsonl") ||
           has_suffix(path, ".ndjson") || has_suffix(path, ".csv");
}

// The kind of a source, checked: a missing path or an unknown file kind is an error.
static int classify(const char *src, const struct tw_ingest_options *opt, enum kind *k)
{
    bool url = strstr(src, "://") != NULL;
    if (strncmp(src, "git@", 4) == 0 || strncmp(src, "ssh://", 6) == 0 ||
        strncmp(src, "git://", 6) == 0 || (url && has_suffix(src, ".git"))) {
        *k = K_GIT;
        return 0;
    }
    if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0) {
        *k = K_WEB;
        return 0;
    }
    if (url && strncmp(src, "file://", 7) != 0)
        return tw_error_set(TW_EINVAL, "%s: unsupported URL scheme (http, https, git, ssh)", src);
    const char *path = strncmp(src, "file://", 7) == 0 ? src + 7 : src;
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_error_set(TW_ENOENT, "%s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char git[4096];
        snprintf(git, sizeof git, "%s/.git", path);
        if (!opt->map && access(git, F_OK) == 0)
            *k = K_GIT;
        else
            *k = opt->map ? K_RECORDS_DIR : K_FOLDER;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return tw_error_set(TW_EINVAL, "%s: not a file or folder", src);
    if (is_records_file(path)) {
        *k = K_RECORDS;
        return 0;
    }
    const char *kind = tw_file_kind(path);
    if (!kind || strcmp(kind, "image") == 0)
        return tw_error_set(TW_EINVAL,
                            "%s: unknown file kind (Markdown, HTML, text, code, "
                            "or .json/.jsonl/.csv records)",
                            src);
    *k = K_FILE;
    return 0;
}

// One file given by name: extracted as the folder source would.
static int one_file(const char *path, const struct tw_sink *sink)
{
    char *data = NULL;
    size_t len = 0;
    int rc = tw_file_read(path, 64u << 20, &data, &len);
    if (rc)
        return rc;
    const char *kind = tw_file_kind(path);
    struct tw_extracted e;
    tw_extracted_init(&e);
    rc = tw_extract_file(kind, data, len, &e);
    char *abs = realpath(path, NULL);
    tw_str uri;
    tw_str_init(&uri);
    if (!rc && (!abs || tw_str_printf(&uri, "file://%s", abs)))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc) {
        bool code = strcmp(kind, "code") == 0;
        struct tw_doc_in d = { .uri = tw_str_cstr(&uri),
                               .category = code ? TW_DOC_REPOSITORY : NULL,
                               .title = tw_str_len(&e.title) ? tw_str_cstr(&e.title)
                                                             : (code ? path : NULL),
                               .content = tw_str_cstr(&e.text) ? tw_str_cstr(&e.text) : "",
                               .content_len = tw_str_len(&e.text),
                               .extractor = kind };
        rc = sink->doc(sink->ud, &d);
    }
    free(abs);
    tw_str_free(&uri);
    tw_extracted_free(&e);
    tw_free(data);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Every records file directly in a folder, in name order.
static int records_dir(const char *dir, const char *map, const struct tw_sink *sink)
{
    DIR *d = opendir(dir);
    if (!d)
        return tw_error_set(TW_EIO, "%s: %s", dir, strerror(errno));
    tw_vec names;
    tw_vec_init(&names, sizeof(char *));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_records_file(e->d_name))
            continue;
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, e->d_name) < 0 || tw_vec_push(&names, &p)) {
            free(p);
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        }
    }
    closedir(d);
    qsort(names.data, names.len, sizeof(char *), cmp_str);
    for (size_t i = 0; !rc && i < names.len; i++) {
        rc = tw_source_records(TW_VEC_AT(&names, char *, i), map, sink);
        if (sink->progress)
            sink->progress(sink->ud, (int64_t)i + 1, (int64_t)names.len);
    }
    for (size_t i = 0; i < names.len; i++)
        free(TW_VEC_AT(&names, char *, i));
    tw_vec_free(&names);
    return rc;
}

static int add_sig(void *ud, int64_t seq, const uint32_t *sig)
{
    int rc = tw_minhash_add_signature(ud, (uint64_t)seq, sig);
    return rc && rc != TW_EEXIST ? tw_error_set(rc, "out of memory") : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_sources(struct ingest *in, const char *const *sources, const enum kind *kinds,
                       size_t n, const struct tw_sink *sink)
{
    const struct tw_ingest_options *opt = in->opt;
    int rc = 0;
    // The web sources go together: one crawl shares robots.txt, rate limits and dedupe.
    tw_vec urls;
    tw_vec_init(&urls, sizeof(const char *));
    for (size_t i = 0; !rc && i < n; i++) {
        const char *src = sources[i];
        const char *path = strncmp(src, "file://", 7) == 0 ? src + 7 : src;
        switch (kinds[i]) {
        case K_WEB:
            rc = tw_vec_push(&urls, &src) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
            continue;
        case K_GIT:
            in->kind = "git";
            rc = tw_source_git(src, &(struct tw_git_options){ 0 }, sink);
            break;
        case K_FOLDER:
            in->kind = "folder";
            rc = tw_source_folder(path, &(struct tw_folder_options){ 0 }, sink);
            break;
        case K_RECORDS:
            in->kind = "records";
            rc = tw_source_records(path, opt->map, sink);
            break;
        case K_RECORDS_DIR:
            in->kind = "records";
            rc = records_dir(path, opt->map, sink);
            break;
        case K_FILE:
            in->kind = "folder";
            rc = one_file(path, sink);
            break;
        }
        if (rc)
            tw_error_prefix("%s", src);
    }
    if (!rc && urls.len) {
        in->kind = "web";
        struct tw_web_options w = { .user_agent = opt->user_agent,
                                    .depth = opt->depth,
                                    .max_pages = opt->max_pages,
                                    .rate_per_host = opt->rate_per_host,
                                    .timeout_ms = opt->timeout_ms,
                                    .refresh = opt->refresh };
        rc = tw_source_web((const char *const *)urls.data, urls.len, &w, sink);
    }
    tw_vec_free(&urls);
    return rc;
}

int tw_ingest(struct tw_home *h, const char *const *sources, size_t n_sources,
              const struct tw_ingest_options *opt, struct tw_ingest_summary *summary)
{
    enum kind *kinds = tw_malloc_array(n_sources ? n_sources : 1, sizeof *kinds);
    if (!kinds)
        return tw_error_set(TW_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < n_sources; i++)
        rc = classify(sources[i], opt, &kinds[i]);
    struct ingest in = { .h = h, .opt = opt, .s = summary };
    tw_str_init(&in.text);
    if (!rc && opt->near_dup <= 1) {
        struct tw_minhash_options mo = tw_minhash_options_default();
        mo.n_perm = N_PERM;
        mo.threshold = opt->near_dup > 0 ? opt->near_dup : 0.9;
        rc = tw_minhash_new(&mo, &in.mh);
        if (!rc)
            rc = tw_wh_minhashes(h, N_PERM, add_sig, in.mh);
    }
    json_t *src_json = json_array();
    for (size_t i = 0; src_json && i < n_sources; i++)
        json_array_append_new(src_json, json_string(sources[i]));
    char *src_text = src_json ? json_dumps(src_json, JSON_COMPACT) : NULL;
    json_decref(src_json);
    int64_t run_id = 0;
    if (!rc)
        rc = tw_wh_ingest_begin(h, src_text ? src_text : "[]", &run_id);
    free(src_text);
    if (!rc && opt->progress) {
        tw_progress_init(&in.bar, "ingest", 0, stderr);
        in.bar_on = true;
    }
    double t0 = now_s();
    struct tw_sink sink = { .ud = &in,
                            .doc = sink_doc,
                            .skip = sink_skip,
                            .fail = sink_fail,
                            .seen = sink_seen,
                            .progress = sink_progress };
    if (!rc)
        rc = run_sources(&in, sources, kinds, n_sources, &sink);
    // What was written stays: each document is whole, and a re-run skips it.
    int frc = flush(&in);
    rc = rc ? rc : frc;
    summary->seconds = now_s() - t0;
    if (in.bar_on)
        tw_progress_done(&in.bar);
    if (run_id) {
        json_t *j = tw_ingest_summary_json(summary);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        int erc = tw_wh_ingest_end(h, run_id, text);
        free(text);
        rc = rc ? rc : erc;
    }
    tw_minhash_free(in.mh);
    tw_str_free(&in.text);
    tw_free(kinds);
    return rc;
}
