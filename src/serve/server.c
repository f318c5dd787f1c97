// The HTTP server (server.h). Threads: libmicrohttpd's pool (parsing, routing, answering
// what is quick), the scheduler's engine thread (generation), a worker pool (embeddings,
// reranking, /rag, reloads) and one trace writer. A request is a refcounted struct req: the
// HTTP side holds one reference until libmicrohttpd reports the request complete, a job or a
// worker task another until it ends. A request that waits is a suspended connection, resumed
// by whoever has something for it (wake); the lock of the request orders suspend and resume.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE // POLLRDHUP
#endif
#include "serve/server.h"

#include <arpa/inet.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/pool.h"
#include "model/context.h"
#include "model/embed.h"
#include "rag/ask.h"
#include "serve/api.h"
#include "serve/metrics.h"
#include "serve/sched.h"
#include "store/home.h"
#include "store/registry.h"
#include "store/traces.h"

enum route {
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_CHAT,
    R_COMPLETIONS,
    R_EMBEDDINGS,
    R_RERANK,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_RAG,
    R_RELOAD,
    R_UNKNOWN
};

static const struct {
    const char *path, *method;
} routes[] = {
    [R_HEALTH] = { "/health", "GET" },
    [R_METRICS] = { "/metrics", "GET" },
    [R_MODELS] = { "/v1/models", "GET" },
    [R_CHAT] = { "/v1/chat/completions", "POST" },
    [R_COMPLETIONS] = { "/v1/completions", "POST" },
    [R_EMBEDDINGS] = { "/v1/embeddings", "POST" },
    [R_RERANK] = { "/v1/rerank", "POST" },
    [R_TOKENIZE] = { "/tokenize", "POST" },
    [R_DETOKENIZE] = { "/detokenize", "POST" },
    [R_RAG] = { "/rag", "POST" },
    [R_RELOAD] = { "/admin/reload", "POST" },
    [R_UNKNOWN] = { "other", "" },
};

// The generating model with its backend and scheduler; replaced whole on reload, freed when
// the last request that uses it lets go.
struct engine {
    int refs;              // under server.lock
    struct tw_model *m;    // the model the scheduler runs (on the backend's device)
    struct tw_model *host; // the model as opened, when m is its copy on a GPU
    struct tw_backend *be;
    tw_sched *sched;
    enum tw_chat_family family;
    char id[256];
    int64_t created;
};

// An encoder session that one request at a time uses.
struct encoder {
    struct tw_session s;
    pthread_mutex_t lock;
    char id[256];
};

struct server {
    const struct tw_server_params *p;
    struct MHD_Daemon *d;
    pthread_mutex_t lock; // eng, loading, stopping, active
    pthread_cond_t idle;
    struct engine *eng;
    bool loading, stopping;
    atomic_bool cancel_all;
    int active;
    int jobs; // generation jobs whose gen_done has not returned: a request can complete (its
              // response sent) while gen_done still runs, so shutdown waits for both
    struct encoder emb, rr;
    bool have_emb, have_rr;
    struct tw_home *home;     // traces (the trace writer's)
    struct tw_home *rag_home; // the retriever's and /rag's, under rag_lock
    tw_retriever *retr;
    pthread_mutex_t rag_lock;
    tw_pool *workers, *tracer;
    tw_metrics *metrics;
    tw_metric *m_req, *m_lat, *m_ttft, *m_ptok, *m_gtok;
    atomic_uint_fast64_t next_id;
    pthread_mutex_t reload_lock;
    pthread_mutex_t home_lock; // the trace writes to home
};

struct req {
    struct server *S;
    struct MHD_Connection *conn;
    int fd;
    enum route route;
    double t0;
    pthread_mutex_t lock;
    int refs;
    tw_str body;
    bool too_big, dispatched, suspended, closed;
    // A response made while the connection was suspended.
    bool ready;
    unsigned status;
    tw_str resp;
    const char *ctype;
    // Generation.
    struct engine *eng;
    struct tw_api_gen api;
    struct tw_job job;
    tw_vec ids;
    tw_str text; // the generated text
    bool streaming, first, finished, job_active;
    tw_str out; // SSE bytes not yet sent
    size_t out_off;
    struct tw_job_result res;
    char id[48];
    int64_t created;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- engines

static void engine_free(struct engine *e)
{
    if (!e)
        return;
    tw_sched_free(e->sched, false);
    if (e->host) // the device copy goes before its backend
        tw_model_close(e->m), e->m = e->host;
    tw_backend_free(e->be);
    tw_model_close(e->m);
    tw_free(e);
}

static const char *last_component(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/')
        s--;
    return s;
}

// A model that is not a file or folder but a registry reference ("NAME", "NAME:3",
// "@promoted": twin serve without --model) is looked up in the home at every load, so that
// a reload follows twin models promote. *path and *name get the folder and the API id.
static int resolve_model(const struct tw_server_params *p, struct tw_model_ref *r,
                         const char **path, const char **name)
{
    *path = p->model;
    *name = p->name ? p->name : last_component(p->model);
    if (!p->home || tw_file_exists(p->model) || !tw_registry_is_ref(p->model))
        return 0;
    struct tw_home *h;
    int rc = tw_home_open(p->home, &h);
    if (rc)
        return rc;
    rc = tw_registry_resolve(h, p->model, r);
    tw_home_close(h);
    if (rc)
        return rc;
    TW_LOG_INFO("serve: %s is %s:%lld (%s)", p->model, r->name, (long long)r->version, r->path);
    *path = r->path;
    *name = p->name ? p->name : r->name;
    return 0;
}

static int engine_load(const struct tw_server_params *p, struct engine **out)
{
    struct tw_model_ref ref;
    const char *path, *name;
    int rc = resolve_model(p, &ref, &path, &name);
    if (rc)
        return rc;
    struct engine *e = tw_calloc(1, sizeof *e);
    if (!e)
        return tw_error_set(TW_ENOMEM, "out of memory");
    e->refs = 1;
    e->created = (int64_t)time(NULL);
    rc = tw_model_open(path, &e->m);
    if (!rc && (!e->m->tok || !tw_arch_is_decoder(e->m->cfg.arch)))
        rc = tw_error_set(TW_EINVAL, "%s: serving needs a decoder model with a tokenizer", path);
    if (!rc)
        rc = p->template
                 ? tw_chat_family_from_name(p->template, &e->family)
                 : tw_chat_family_from_template(tw_tokenizer_chat_template(e->m->tok), &e->family);
    if (!rc)
        rc = tw_backend_open(p->device, p->threads, &e->be);
    if (!rc && e->be->device != TW_DEVICE_CPU) {
        e->host = e->m;
        e->m = NULL;
        rc = tw_model_to_backend(e->host, e->be, &e->m);
        if (rc)
            e->m = e->host, e->host = NULL;
    }
    struct tw_sched_params sp = {
        .n_slots = p->slots,
        .n_ctx = p->n_ctx,
        .n_batch = p->n_batch,
        .n_queue = p->queue,
        .n_kv = p->kv_tokens,
    };
    if (!rc)
        rc = tw_sched_new(e->m, e->be, &sp, &e->sched);
    if (rc) {
        engine_free(e);
        return rc;
    }
    snprintf(e->id, sizeof e->id, "%s", name);
    *out = e;
    return 0;
}

static struct engine *engine_get(struct server *S)
{
    pthread_mutex_lock(&S->lock);
    struct engine *e = S->eng;
    if (e)
        e->refs++;
    pthread_mutex_unlock(&S->lock);
    return e;
}

// Never on the engine thread: the last reference joins it.
static void engine_put(struct server *S, struct engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&S->lock);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&S->lock);
    if (last)
        engine_free(e);
}

// Loads the model again and swaps it in; requests in flight finish on the old one.
static int reload(struct server *S)
{
    if (!S->p->model)
        return tw_error_set(TW_ESTATE, "this server has no generating model to reload");
    pthread_mutex_lock(&S->reload_lock);
    struct engine *e = NULL;
    double t0 = now_s();
    int rc = engine_load(S->p, &e);
    if (rc == 0) {
        pthread_mutex_lock(&S->lock);
        struct engine *old = S->eng;
        S->eng = e;
        pthread_mutex_unlock(&S->lock);
        engine_put(S, old);
        TW_LOG_INFO("serve: reloaded %s in %.1f s", S->p->model, now_s() - t0);
    } else {
        TW_LOG_WARN("serve: reload failed, the running model stays: %s", tw_error_msg());
    }
    pthread_mutex_unlock(&S->reload_lock);
    return rc;
}

// ---- requests

static struct req *req_new(struct server *S, struct MHD_Connection *c, const char *url,
                           const char *method)
{
    struct req *r = tw_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->S = S;
    r->conn = c;
    r->t0 = now_s();
    r->refs = 1;
    r->route = R_UNKNOWN;
    for (int i = 0; i < R_UNKNOWN; i++)
        if (strcmp(url, routes[i].path) == 0)
            r->route = (enum route)i;
    (void)method;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    pthread_mutex_init(&r->lock, NULL);
    tw_str_init(&r->body);
    tw_str_init(&r->resp);
    tw_str_init(&r->text);
    tw_str_init(&r->out);
    tw_vec_init(&r->ids, sizeof(int32_t));
    atomic_init(&r->job.cancel, false);
    r->created = (int64_t)time(NULL);
    snprintf(r->id, sizeof r->id, "twin-%llx-%llu", (unsigned long long)r->created,
             (unsigned long long)atomic_fetch_add(&S->next_id, 1));
    return r;
}

static void req_ref(struct req *r)
{
    pthread_mutex_lock(&r->lock);
    r->refs++;
    pthread_mutex_unlock(&r->lock);
}

static void req_release(struct req *r)
{
    pthread_mutex_lock(&r->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (!last)
        return;
    engine_put(r->S, r->eng);
    tw_api_gen_free(&r->api);
    tw_str_free(&r->body);
    tw_str_free(&r->resp);
    tw_str_free(&r->text);
    tw_str_free(&r->out);
    tw_vec_free(&r->ids);
    pthread_mutex_destroy(&r->lock);
    tw_free(r);
}

// Resumes the connection if it waits (r->lock held).
static void wake(struct req *r)
{
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

// Suspends the connection until wake (r->lock held).
static void park(struct req *r)
{
    r->suspended = true;
    MHD_suspend_connection(r->conn);
}

// Is the client still there? The socket is polled: a peer that closed or reset shows as
// hang-up, or as readable with nothing to read.
static bool req_alive(void *ud)
{
    struct req *r = ud;
    if (atomic_load(&r->S->cancel_all))
        return false;
    pthread_mutex_lock(&r->lock);
    bool ok = !r->closed;
    if (ok && r->fd >= 0) {
        struct pollfd pf = { .fd = r->fd, .events = POLLIN | POLLRDHUP };
        if (poll(&pf, 1, 0) == 1) {
            char b;
            if (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))
                ok = false;
            else if ((pf.revents & POLLIN) && recv(r->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
                ok = false;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

// ---- responses

static void add_common_headers(struct server *S, struct MHD_Response *resp, const char *ctype)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (S->p->cors) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, S->p->cors);
        if (strcmp(S->p->cors, "*") != 0)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
    }
    bool stopping;
    pthread_mutex_lock(&S->lock);
    stopping = S->stopping;
    pthread_mutex_unlock(&S->lock);
    if (stopping)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

static enum MHD_Result send_buf(struct req *r, unsigned status, const char *ctype,
                                const char *body, size_t len, const char *retry_after)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    add_common_headers(r->S, resp, ctype);
    if (retry_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result send_json(struct req *r, unsigned status, json_t *j)
{
    tw_str s;
    tw_str_init(&s);
    if (tw_api_dump(j, &s) != 0) {
        tw_str_free(&s);
        return MHD_NO;
    }
    enum MHD_Result ok = send_buf(r, status, "application/json", tw_str_cstr(&s), s.v.len, NULL);
    tw_str_free(&s);
    return ok;
}

static const char *error_type(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    case 500:
        return "server_error";
    case 503:
        return "unavailable_error";
    default:
        return "invalid_request_error";
    }
}

// The HTTP status of an error code from the engine or the parsers.
static unsigned status_of(int rc)
{
    switch (rc) {
    case TW_EFORMAT:
    case TW_EINVAL:
    case TW_EUNSUPPORTED:
        return 400;
    case TW_ENOENT:
        return 404;
    case TW_ELIMIT:
        return 400;
    case TW_ESTATE:
        return 503;
    default:
        return 500;
    }
}

static json_t *error_json(unsigned status, const char *code, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return tw_api_error(msg, error_type(status), code);
}

static enum MHD_Result send_error(struct req *r, unsigned status, const char *code,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *j = error_json(status, code, fmt, ap);
    va_end(ap);
    tw_str s;
    tw_str_init(&s);
    if (tw_api_dump(j, &s) != 0) {
        tw_str_free(&s);
        return MHD_NO;
    }
    enum MHD_Result ok = send_buf(r, status, "application/json", tw_str_cstr(&s), s.v.len,
                                  status == 429 || status == 503 ? "1" : NULL);
    tw_str_free(&s);
    return ok;
}

// Keeps a response for the suspended connection and wakes it (r->lock held).
static void ready(struct req *r, unsigned status, json_t *j)
{
    tw_str_clear(&r->resp);
    if (tw_api_dump(j, &r->resp) != 0) {
        status = 500;
        tw_str_clear(&r->resp);
        tw_api_dump(tw_api_error("out of memory", "server_error", NULL), &r->resp);
    }
    r->status = status;
    r->ctype = "application/json";
    r->ready = true;
    wake(r);
}

static void ready_error(struct req *r, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *j = error_json(status, code, fmt, ap);
    va_end(ap);
    ready(r, status, j);
}

// ---- authentication

static bool authorised(struct server *S, struct MHD_Connection *c, enum route route)
{
    const struct tw_server_params *p = S->p;
    if (p->n_api_keys == 0)
        return true;
    if ((route == R_HEALTH || route == R_METRICS) && !p->auth_all)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *key = h + 7;
    size_t n = strlen(key);
    bool ok = false;
    for (size_t i = 0; i < p->n_api_keys; i++) // every key is compared, in constant time
        ok |= strlen(p->api_keys[i]) == n && CRYPTO_memcmp(p->api_keys[i], key, n) == 0;
    return ok;
}

// ---- traces

// Writes t to the home (from the trace writer or a worker thread, one at a time).
static void put_trace(struct server *S, struct tw_trace *t, const char *id)
{
    pthread_mutex_lock(&S->home_lock);
    if (tw_trace_put(S->home, t) != 0)
        TW_LOG_WARN("serve: trace of %s not written: %s", id, tw_error_msg());
    pthread_mutex_unlock(&S->home_lock);
}

// The trace of an encoder request (embeddings, rerank), on the worker that ran it; rc is its
// outcome (its message is the thread's error). detail is released.
static void trace_encoder(struct req *r, const char *kind, const char *question, const char *model,
                          int64_t tokens, int rc, json_t *detail)
{
    struct server *S = r->S;
    if (!S->home) {
        json_decref(detail);
        return;
    }
    char status[300];
    snprintf(status, sizeof status, "%s", rc ? tw_error_msg() : "ok");
    char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    struct tw_trace t = { .kind = kind,
                          .question = question,
                          .model = model,
                          .prompt_tokens = tokens,
                          .total_ms = (now_s() - r->t0) * 1e3,
                          .status = status,
                          .detail = d ? d : "{}" };
    put_trace(S, &t, r->id);
    tw_free(d);
}

static void trace_task(void *arg)
{
    struct req *r = arg;
    struct server *S = r->S;
    if (S->home) {
        const struct tw_api_gen *a = &r->api;
        const char *question = a->prompt;
        for (size_t i = 0; a->chat && i < a->n_msgs; i++)
            if (strcmp(a->msgs[i].role, "user") == 0)
                question = a->msgs[i].content;
        const struct tw_job_result *res = &r->res;
        char status[300];
        if (res->rc != 0)
            snprintf(status, sizeof status, "%s", res->msg);
        else
            snprintf(status, sizeof status, "%s",
                     res->finish == TW_FINISH_CANCEL && !res->timed_out ? "cancelled" : "ok");
        json_t *detail = json_pack(
            "{s:s, s:s, s:b, s:s, s:f, s:f, s:i, s:O}", "route", routes[r->route].path, "id",
            r->id, "stream", r->streaming, "finish_reason",
            tw_api_finish_reason(res->finish, res->timed_out), "queue_ms", res->queue_s * 1e3,
            "ttft_ms", res->ttft_s * 1e3, "reused_tokens", res->n_reused, "request", a->root);
        char *dtext = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
        json_decref(detail);
        struct tw_trace t = { .kind = r->route == R_CHAT ? "chat" : "completion",
                              .question = question ? question : "",
                              .answer = tw_str_cstr(&r->text),
                              .model = r->eng ? r->eng->id : NULL,
                              .prompt_tokens = res->n_prompt,
                              .completion_tokens = res->n_gen,
                              .total_ms = res->total_s * 1e3,
                              .status = status,
                              .detail = dtext ? dtext : "{}" };
        put_trace(S, &t, r->id);
        tw_free(dtext);
    }
    req_release(r);
}

// ---- generation (/v1/chat/completions, /v1/completions)

static int gen_text(void *ud, const char *text, size_t len)
{
    struct req *r = ud;
    pthread_mutex_lock(&r->lock);
    int rc = tw_str_append(&r->text, text, len);
    if (rc == 0 && r->streaming) {
        rc = tw_api_chunk(&r->out, r->id, r->created, r->eng->id, r->api.chat, r->first, text, len,
                          NULL);
        r->first = false;
        wake(r);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

// What is in flight, *n (S->active: requests; S->jobs: generation jobs, up before the submit,
// down when gen_done is through) moved by d under S->lock; wait_idle wakes when both are 0.
static void in_flight(struct server *S, int *n, int d)
{
    pthread_mutex_lock(&S->lock);
    *n += d;
    if (S->active == 0 && S->jobs == 0)
        pthread_cond_broadcast(&S->idle);
    pthread_mutex_unlock(&S->lock);
}

static void gen_done(void *ud, const struct tw_job_result *res)
{
    struct req *r = ud;
    struct server *S = r->S;
    pthread_mutex_lock(&r->lock);
    r->res = *res;
    r->job_active = false;
    const char *finish = tw_api_finish_reason(res->finish, res->timed_out);
    if (r->streaming) {
        if (res->rc != 0) {
            json_t *e = tw_api_error(res->msg, "server_error", NULL);
            tw_str_append(&r->out, "data: ", 6);
            tw_api_dump(e, &r->out);
            tw_str_append(&r->out, "\n\n", 2);
        } else {
            tw_api_chunk(&r->out, r->id, r->created, r->eng->id, r->api.chat, r->first, NULL, 0,
                         finish);
            if (r->api.include_usage)
                tw_api_usage_chunk(&r->out, r->id, r->created, r->eng->id, r->api.chat,
                                   res->n_prompt, res->n_gen);
        }
        tw_str_append(&r->out, "data: [DONE]\n\n", 14);
        r->finished = true;
        wake(r);
    } else if (res->rc != 0) {
        ready_error(r, 500, NULL, "generation failed: %s", res->msg);
    } else {
        ready(r, 200,
              tw_api_completion(r->id, r->created, r->eng->id, r->api.chat, tw_str_cstr(&r->text),
                                finish, res->n_prompt, res->n_gen));
    }
    pthread_mutex_unlock(&r->lock);
    tw_metric_add(S->m_ptok, NULL, res->n_prompt);
    tw_metric_add(S->m_gtok, NULL, res->n_gen);
    if (res->ttft_s > 0)
        tw_metric_observe(S->m_ttft, NULL, res->ttft_s);
    // The job's reference goes with the trace, on the trace writer's thread (the last
    // reference to an engine must not be dropped on its own thread).
    if (tw_pool_submit(S->tracer, trace_task, r) != 0)
        TW_LOG_WARN("serve: cannot queue the trace of %s", r->id);
    in_flight(S, &S->jobs, -1); // the last use of S here
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct req *r = cls;
    pthread_mutex_lock(&r->lock);
    size_t avail = r->out.v.len - r->out_off;
    ssize_t n = 0;
    if (avail > 0) {
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(buf, (const char *)r->out.v.data + r->out_off, (size_t)n);
        r->out_off += (size_t)n;
        if (r->out_off == r->out.v.len) {
            tw_str_clear(&r->out);
            r->out_off = 0;
        }
    } else if (r->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        park(r);
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

static enum MHD_Result gen_start(struct req *r)
{
    struct server *S = r->S;
    r->eng = engine_get(S);
    if (!r->eng)
        return S->p->model
                   ? send_error(r, 503, "loading", "the model is loading")
                   : send_error(r, 404, "model_not_found",
                                "this server has no generating model (twin serve --model)");
    bool chat = r->route == R_CHAT;
    int rc = tw_api_parse_gen(tw_str_cstr(&r->body), r->body.v.len, chat, &r->api);
    if (rc != 0)
        return send_error(r, 400, NULL, "%s", tw_error_msg());
    if (r->api.model && strcmp(r->api.model, r->eng->id) != 0)
        return send_error(r, 404, "model_not_found",
                          "the model '%s' does not exist (this server has '%s')", r->api.model,
                          r->eng->id);
    const struct tw_model *m = r->eng->m;
    if (chat)
        rc = tw_chat_encode(m, r->eng->family, r->api.msgs, r->api.n_msgs, &r->ids);
    else
        rc = tw_tokenizer_encode(m->tok, r->api.prompt, strlen(r->api.prompt), TW_TOK_ADD_SPECIAL,
                                 &r->ids, NULL);
    if (rc != 0)
        return send_error(r, status_of(rc), NULL, "%s", tw_error_msg());
    struct tw_job *j = &r->job;
    j->prompt = r->ids.data;
    j->n_prompt = (int32_t)r->ids.len;
    j->gen = r->api.gen;
    double limit = S->p->request_s;
    if (r->api.timeout_s > 0 && r->api.timeout_s < limit)
        limit = r->api.timeout_s;
    j->deadline = limit > 0 ? now_s() + limit : 0;
    j->on_text = gen_text;
    j->alive = req_alive;
    j->on_done = gen_done;
    j->ud = r;
    r->streaming = r->api.stream;
    r->first = true;
    req_ref(r); // the job's
    in_flight(S, &S->jobs, 1);
    pthread_mutex_lock(&r->lock);
    r->job_active = true;
    rc = tw_sched_submit(r->eng->sched, j);
    if (rc != 0) {
        r->job_active = false;
        r->refs--;
        pthread_mutex_unlock(&r->lock);
        in_flight(S, &S->jobs, -1);
        if (rc == TW_ELIMIT && strstr(tw_error_msg(), "queue"))
            return send_error(r, 429, "queue_full", "%s; retry later", tw_error_msg());
        return send_error(r, status_of(rc), rc == TW_ELIMIT ? "context_length_exceeded" : NULL,
                          "%s", tw_error_msg());
    }
    if (!r->streaming) {
        park(r);
        pthread_mutex_unlock(&r->lock);
        return MHD_YES;
    }
    pthread_mutex_unlock(&r->lock);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, r, NULL);
    if (!resp)
        return MHD_NO;
    add_common_headers(S, resp, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    r->status = 200;
    enum MHD_Result ok = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ok;
}

// ---- worker routes (/v1/embeddings, /v1/rerank, /rag, /admin/reload)

static void embed_task(void *arg)
{
    struct req *r = arg;
    struct server *S = r->S;
    struct tw_api_embed e;
    int rc = tw_api_parse_embed(tw_str_cstr(&r->body), r->body.v.len, &e);
    pthread_mutex_lock(&r->lock);
    if (rc != 0) {
        ready_error(r, 400, NULL, "%s", tw_error_msg());
    } else if (e.model && strcmp(e.model, S->emb.id) != 0) {
        ready_error(r, 404, "model_not_found",
                    "the model '%s' does not exist (this server embeds with '%s')", e.model,
                    S->emb.id);
    } else {
        pthread_mutex_unlock(&r->lock);
        const struct tw_model *m = S->emb.s.m;
        size_t dim = (size_t)m->cfg.n_embd;
        float *vecs = tw_malloc_array(e.n_inputs * dim, sizeof(float));
        size_t *lens = tw_malloc_array(e.n_inputs, sizeof *lens);
        int64_t tokens = 0;
        rc = vecs && lens ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
        for (size_t i = 0; rc == 0 && i < e.n_inputs; i++)
            lens[i] = strlen(e.inputs[i]);
        pthread_mutex_lock(&S->emb.lock); // the inputs in one batch
        if (rc == 0)
            rc = tw_embed_texts(S->emb.s.c, m, (const char *const *)e.inputs, lens,
                                (int)e.n_inputs, vecs, &tokens);
        pthread_mutex_unlock(&S->emb.lock);
        tw_free(lens);
        trace_encoder(r, "embeddings", e.inputs[0], S->emb.id, tokens, rc,
                      json_pack("{s:s, s:s, s:I}", "route", routes[r->route].path, "id", r->id,
                                "inputs", (json_int_t)e.n_inputs));
        pthread_mutex_lock(&r->lock);
        if (rc != 0)
            ready_error(r, status_of(rc), NULL, "%s", tw_error_msg());
        else
            ready(r, 200, tw_api_embeddings(S->emb.id, vecs, e.n_inputs, dim, e.base64, tokens));
        tw_free(vecs);
    }
    pthread_mutex_unlock(&r->lock);
    tw_api_embed_free(&e);
    req_release(r);
}

struct scored {
    size_t index;
    double score;
};

static int by_score(const void *a, const void *b)
{
    double x = ((const struct scored *)a)->score, y = ((const struct scored *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void rerank_task(void *arg)
{
    struct req *r = arg;
    struct server *S = r->S;
    json_t *root = NULL, *docs = NULL;
    const char *query = NULL, *model = NULL;
    int64_t top_n = 0;
    bool return_docs = true;
    int rc = tw_api_parse_object(tw_str_cstr(&r->body), r->body.v.len, &root);
    if (rc == 0 &&
        ((rc = tw_json_get_str(root, "request", "query", &query)) ||
         (rc = tw_json_get_array(root, "request", "documents", &docs)) ||
         (rc = tw_json_opt_str(root, "request", "model", NULL, &model)) ||
         (rc = tw_json_opt_int(root, "request", "top_n", 0, &top_n)) ||
         (rc = tw_json_opt_bool(root, "request", "return_documents", true, &return_docs))))
        rc = TW_EINVAL;
    size_t n = docs ? json_array_size(docs) : 0;
    if (rc == 0 && (n == 0 || n > TW_API_MAX_INPUTS))
        rc = tw_error_set(TW_EINVAL, "request: documents: expected 1 to %d documents",
                          TW_API_MAX_INPUTS);
    if (rc == 0 && model && strcmp(model, S->rr.id) != 0) {
        pthread_mutex_lock(&r->lock);
        ready_error(r, 404, "model_not_found",
                    "the model '%s' does not exist (this server reranks with '%s')", model,
                    S->rr.id);
        pthread_mutex_unlock(&r->lock);
        json_decref(root);
        req_release(r);
        return;
    }
    struct scored *sc = rc == 0 ? tw_calloc(n, sizeof *sc) : NULL;
    if (rc == 0 && !sc)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    pthread_mutex_lock(&S->rr.lock);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *d = json_array_get(docs, i);
        const char *text = json_is_string(d) ? json_string_value(d)
                                             : json_string_value(json_object_get(d, "text"));
        if (!text) {
            rc = tw_error_set(TW_EINVAL,
                              "request: documents[%zu]: expected a string or an "
                              "object with \"text\"",
                              i);
            break;
        }
        float logit;
        rc = tw_rerank_score(S->rr.s.c, S->rr.s.m, query, strlen(query), text, strlen(text),
                             &logit);
        sc[i] = (struct scored){ i, logit };
    }
    pthread_mutex_unlock(&S->rr.lock);
    if (query && docs)
        trace_encoder(r, "rerank", query, S->rr.id, 0, rc,
                      json_pack("{s:s, s:s, s:I}", "route", routes[r->route].path, "id", r->id,
                                "documents", (json_int_t)n));
    json_t *out = NULL;
    if (rc == 0) {
        qsort(sc, n, sizeof *sc, by_score);
        size_t keep = top_n > 0 && (size_t)top_n < n ? (size_t)top_n : n;
        json_t *results = json_array();
        for (size_t i = 0; results && i < keep; i++) {
            json_t *d = json_array_get(docs, sc[i].index);
            json_t *item =
                json_pack("{s:I, s:f, s:f}", "index", (json_int_t)sc[i].index, "relevance_score",
                          1.0 / (1.0 + exp(-sc[i].score)), "logit", sc[i].score);
            if (item && return_docs)
                json_object_set_new(item, "document",
                                    json_is_string(d) ? json_pack("{s:O}", "text", d)
                                                      : json_incref(d));
            json_array_append_new(results, item);
        }
        out =
            json_pack("{s:s, s:s, s:o}", "object", "list", "model", S->rr.id, "results", results);
    }
    pthread_mutex_lock(&r->lock);
    if (rc != 0)
        ready_error(r, status_of(rc), NULL, "%s", tw_error_msg());
    else
        ready(r, 200, out);
    pthread_mutex_unlock(&r->lock);
    tw_free(sc);
    json_decref(root);
    req_release(r);
}

// The RAG pipeline's LLM: one job on the scheduler, waited for.
struct rag_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    struct tw_job_result res;
    tw_str *reply;
    struct req *r;
};

static int rag_text(void *ud, const char *text, size_t len)
{
    struct rag_call *c = ud;
    return tw_str_append(c->reply, text, len);
}

static bool rag_alive(void *ud)
{
    struct rag_call *c = ud;
    return req_alive(c->r);
}

static void rag_done(void *ud, const struct tw_job_result *res)
{
    struct rag_call *c = ud;
    pthread_mutex_lock(&c->lock);
    c->res = *res;
    c->done = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static int rag_llm(void *ud, const char *system, const char *user, const struct tw_gen_params *p,
                   tw_gen_fn stream, void *stream_ud, tw_str *reply, int32_t *n_prompt,
                   int32_t *n_gen)
{
    (void)stream;
    (void)stream_ud;
    struct req *r = ud;
    struct engine *e = r->eng;
    struct tw_chat_msg msgs[2] = { { "system", system }, { "user", user } };
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = tw_chat_encode(e->m, e->family, msgs, 2, &ids);
    struct rag_call c = { .reply = reply, .r = r };
    struct tw_job j = { .prompt = ids.data,
                        .n_prompt = (int32_t)ids.len,
                        .gen = *p,
                        .deadline = r->S->p->request_s > 0 ? now_s() + r->S->p->request_s : 0,
                        .on_text = rag_text,
                        .alive = rag_alive,
                        .on_done = rag_done,
                        .ud = &c };
    atomic_init(&j.cancel, false);
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    if (rc == 0 && (rc = tw_sched_submit(e->sched, &j)) == 0) {
        pthread_mutex_lock(&c.lock);
        while (!c.done)
            pthread_cond_wait(&c.cond, &c.lock);
        pthread_mutex_unlock(&c.lock);
        if (c.res.rc != 0)
            rc = tw_error_set(c.res.rc, "%s", c.res.msg);
        else if (c.res.finish == TW_FINISH_CANCEL && !c.res.timed_out)
            rc = tw_error_set(TW_ECANCELED, "the client went away");
        if (n_prompt)
            *n_prompt = c.res.n_prompt;
        if (n_gen)
            *n_gen = c.res.n_gen;
    }
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
    tw_vec_free(&ids);
    return rc;
}

static json_t *rag_response(const struct tw_rag_result *res)
{
    json_t *sources = json_array();
    for (size_t i = 0; sources && i < res->n_sources; i++) {
        const struct tw_rag_source *s = &res->sources[i];
        const struct tw_rag_chunk *c = &s->chunk;
        json_t *o = json_pack(
            "{s:s, s:I, s:s, s:s, s:s, s:s, s:f, s:o, s:s}", "document_id", c->document_id,
            "chunk", (json_int_t)c->chunk, "author", c->author ? c->author : "", "title",
            c->title ? c->title : "", "category", c->category ? c->category : "", "uri",
            c->uri ? c->uri : "", "score", s->fused, "rerank",
            isnan(s->rerank) ? json_null() : json_real(s->rerank), "text", c->text ? c->text : "");
        json_array_append_new(sources, o);
    }
    return json_pack("{s:o, s:o, s:I, s:{s:i, s:i, s:i}}", "answer",
                     res->answer ? json_string(res->answer) : json_null(), "sources", sources,
                     "trace_id", (json_int_t)res->trace_id, "usage", "prompt_tokens",
                     res->prompt_tokens, "completion_tokens", res->completion_tokens,
                     "total_tokens", res->prompt_tokens + res->completion_tokens);
}

static void rag_task(void *arg)
{
    struct req *r = arg;
    struct server *S = r->S;
    json_t *root = NULL;
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    const char *query = NULL, *mode = NULL;
    int64_t k = o.k, expand = o.expand, max_tokens = o.gen.max_tokens;
    bool self_query = o.self_query;
    int rc = tw_api_parse_object(tw_str_cstr(&r->body), r->body.v.len, &root);
    if (rc == 0 &&
        ((rc = tw_json_get_str(root, "request", "query", &query)) ||
         (rc = tw_json_opt_str(root, "request", "author", NULL, &o.author)) ||
         (rc = tw_json_opt_str(root, "request", "category", NULL, &o.category)) ||
         (rc = tw_json_opt_str(root, "request", "mode", NULL, &mode)) ||
         (rc = tw_json_opt_int(root, "request", "k", k, &k)) ||
         (rc = tw_json_opt_int(root, "request", "expand", expand, &expand)) ||
         (rc = tw_json_opt_int(root, "request", "max_tokens", max_tokens, &max_tokens)) ||
         (rc = tw_json_opt_bool(root, "request", "self_query", self_query, &self_query))))
        rc = TW_EINVAL;
    if (rc == 0 && (!*query || k < 1 || k > 100 || expand < 1 || expand > 10 || max_tokens < 1 ||
                    max_tokens > (1 << 20)))
        rc = tw_error_set(TW_EINVAL, "request: query must be non-empty, k 1..100, expand "
                                     "1..10, max_tokens >= 1");
    if (rc == 0 && mode && !tw_search_mode_parse(mode, &o.mode))
        rc = tw_error_set(TW_EINVAL, "request: mode: \"%s\" is not dense, sparse or hybrid", mode);
    struct tw_rag_result res = { 0 };
    if (rc == 0) {
        o.k = (uint32_t)k;
        o.expand = (int)expand;
        o.self_query = self_query;
        o.gen.max_tokens = (int32_t)max_tokens;
        r->eng = engine_get(S);
        struct tw_rag rag = { .r = S->retr,
                              .reranker = S->have_rr ? &S->rr.s : NULL,
                              .llm_fn = r->eng ? rag_llm : NULL,
                              .llm_ud = r,
                              .llm_model = r->eng ? r->eng->m : NULL,
                              .llm_ctx = r->eng ? tw_sched_n_ctx(r->eng->sched) : 0,
                              .family = r->eng ? r->eng->family : TW_CHAT_LLAMA3,
                              .model_id = r->eng ? r->eng->id : NULL };
        pthread_mutex_lock(&S->rag_lock);
        if (S->have_rr)
            pthread_mutex_lock(&S->rr.lock);
        rc = tw_rag_ask(S->rag_home, &rag, query, &o, &res);
        if (S->have_rr)
            pthread_mutex_unlock(&S->rr.lock);
        pthread_mutex_unlock(&S->rag_lock);
    }
    pthread_mutex_lock(&r->lock);
    if (rc != 0)
        ready_error(r, status_of(rc), NULL, "%s", tw_error_msg());
    else
        ready(r, 200, rag_response(&res));
    pthread_mutex_unlock(&r->lock);
    if (rc == 0) {
        tw_metric_add(S->m_ptok, NULL, res.prompt_tokens);
        tw_metric_add(S->m_gtok, NULL, res.completion_tokens);
    }
    tw_rag_result_free(&res);
    json_decref(root);
    req_release(r);
}

static void reload_task(void *arg)
{
    struct req *r = arg;
    int rc = reload(r->S);
    pthread_mutex_lock(&r->lock);
    if (rc != 0) {
        ready_error(r, status_of(rc) == 400 ? 500 : status_of(rc), NULL, "reload failed: %s",
                    tw_error_msg());
    } else {
        struct engine *e = engine_get(r->S);
        ready(r, 200, json_pack("{s:s, s:s}", "status", "reloaded", "model", e ? e->id : ""));
        pthread_mutex_unlock(&r->lock);
        engine_put(r->S, e);
        req_release(r);
        return;
    }
    pthread_mutex_unlock(&r->lock);
    req_release(r);
}

static enum MHD_Result to_worker(struct req *r, void (*fn)(void *))
{
    req_ref(r);
    pthread_mutex_lock(&r->lock);
    park(r); // before the task can run and wake it
    pthread_mutex_unlock(&r->lock);
    if (tw_pool_submit(r->S->workers, fn, r) != 0) {
        pthread_mutex_lock(&r->lock);
        ready_error(r, 503, NULL, "out of memory queueing the request");
        pthread_mutex_unlock(&r->lock);
        req_release(r);
    }
    return MHD_YES;
}

// ---- the quick routes

static enum MHD_Result models(struct req *r)
{
    struct server *S = r->S;
    json_t *data = json_array();
    struct engine *e = engine_get(S);
    if (e)
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", e->id, "object",
                                              "model", "created", (json_int_t)e->created,
                                              "owned_by", "twin", "kind", "chat"));
    engine_put(S, e);
    if (S->have_emb)
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", S->emb.id,
                                              "object", "model", "created", (json_int_t)0,
                                              "owned_by", "twin", "kind", "embedding"));
    if (S->have_rr)
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", S->rr.id,
                                              "object", "model", "created", (json_int_t)0,
                                              "owned_by", "twin", "kind", "rerank"));
    return send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result tokenize(struct req *r, bool inverse)
{
    struct engine *e = engine_get(r->S);
    r->eng = e;
    if (!e)
        return send_error(r, 503, "loading", "no generating model is loaded");
    json_t *root = NULL;
    int rc = tw_api_parse_object(tw_str_cstr(&r->body), r->body.v.len, &root);
    if (rc != 0)
        return send_error(r, 400, NULL, "%s", tw_error_msg());
    enum MHD_Result ok;
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_str text;
    tw_str_init(&text);
    if (!inverse) {
        const char *content = NULL;
        bool special = false;
        if (tw_json_get_str(root, "request", "content", &content) ||
            tw_json_opt_bool(root, "request", "add_special", false, &special)) {
            ok = send_error(r, 400, NULL, "%s", tw_error_msg());
        } else if ((rc = tw_tokenizer_encode(e->m->tok, content, strlen(content),
                                             special ? TW_TOK_ADD_SPECIAL : 0, &ids, NULL))) {
            ok = send_error(r, status_of(rc), NULL, "%s", tw_error_msg());
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; arr && i < ids.len; i++)
                json_array_append_new(arr, json_integer(((int32_t *)ids.data)[i]));
            ok = send_json(r, 200, json_pack("{s:o}", "tokens", arr));
        }
    } else {
        json_t *arr = json_object_get(root, "tokens");
        rc =
            json_is_array(arr) ? 0 : tw_error_set(TW_EINVAL, "request: tokens: expected an array");
        for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);
            json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (id < 0 || id >= e->m->cfg.n_vocab)
                rc = tw_error_set(TW_EINVAL,
                                  "request: tokens[%zu]: not a token id of the model "
                                  "(0..%d)",
                                  i, e->m->cfg.n_vocab - 1);
            int32_t t = (int32_t)id;
            if (rc == 0)
                rc = tw_vec_push(&ids, &t);
        }
        if (rc == 0)
            rc = tw_tokenizer_decode(e->m->tok, ids.data, ids.len, 0, &text);
        ok =
            rc ? send_error(r, status_of(rc), NULL, "%s", tw_error_msg())
               : send_json(r, 200, json_pack("{s:s%}", "content", tw_str_cstr(&text), text.v.len));
    }
    tw_vec_free(&ids);
    tw_str_free(&text);
    json_decref(root);
    return ok;
}

static enum MHD_Result metrics(struct req *r)
{
    tw_str s;
    tw_str_init(&s);
    enum MHD_Result ok = MHD_NO;
    if (tw_metrics_render(r->S->metrics, &s) == 0)
        ok = send_buf(r, 200, "text/plain; version=0.0.4; charset=utf-8", tw_str_cstr(&s), s.v.len,
                      NULL);
    tw_str_free(&s);
    return ok;
}

static enum MHD_Result dispatch(struct req *r)
{
    struct server *S = r->S;
    pthread_mutex_lock(&S->lock);
    bool loading = S->loading, stopping = S->stopping;
    pthread_mutex_unlock(&S->lock);
    if (r->route == R_HEALTH)
        return loading || stopping
                   ? send_json(r, 503,
                               json_pack("{s:s}", "status", loading ? "loading" : "stopping"))
                   : send_json(r, 200, json_pack("{s:s}", "status", "ok"));
    if (r->route == R_METRICS)
        return metrics(r);
    if (stopping)
        return send_error(r, 503, "stopping", "the server is stopping");
    if (loading && r->route != R_MODELS)
        return send_error(r, 503, "loading", "the models are loading");
    switch (r->route) {
    case R_MODELS:
        return models(r);
    case R_CHAT:
    case R_COMPLETIONS:
        return gen_start(r);
    case R_TOKENIZE:
    case R_DETOKENIZE:
        return tokenize(r, r->route == R_DETOKENIZE);
    case R_EMBEDDINGS:
        if (!S->have_emb)
            return send_error(r, 404, "model_not_found",
                              "this server has no embedding model (twin serve --embedder)");
        return to_worker(r, embed_task);
    case R_RERANK:
        if (!S->have_rr)
            return send_error(r, 404, "model_not_found",
                              "this server has no reranker (twin serve --reranker)");
        return to_worker(r, rerank_task);
    case R_RAG:
        if (!S->retr)
            return send_error(r, 503, "no_feature_store",
                              "/rag needs a home with a feature run (twin features)");
        return to_worker(r, rag_task);
    case R_RELOAD:
        return to_worker(r, reload_task);
    default:
        return send_error(r, 404, "not_found", "no route %s", routes[r->route].path);
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    struct server *S = cls;
    struct req *r = *con_cls;
    if (!r) {
        if (!(r = req_new(S, c, url, method)))
            return MHD_NO;
        *con_cls = r;
        in_flight(S, &S->active, 1);
        if (strcmp(method, "OPTIONS") == 0 && S->p->cors) { // a CORS preflight
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            add_common_headers(S, resp, "text/plain");
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_METHODS,
                                    "GET, POST, OPTIONS");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
            r->status = 204;
            enum MHD_Result ok = MHD_queue_response(c, 204, resp);
            MHD_destroy_response(resp);
            r->dispatched = true;
            return ok;
        }
        r->dispatched = true; // unless nothing below answers
        if (r->route == R_UNKNOWN)
            return send_error(r, 404, "not_found", "no route %s %s", method, url);
        if (strcmp(method, routes[r->route].method) != 0)
            return send_error(r, 405, NULL, "%s takes %s, not %s", url, routes[r->route].method,
                              method);
        if (!authorised(S, c, r->route))
            return send_error(r, 401, "invalid_api_key",
                              "a valid API key is needed: Authorization: Bearer KEY");
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > S->p->max_body)
            return send_error(r, 413, "body_too_large",
                              "the body of %s bytes is over the limit of %zu", cl, S->p->max_body);
        r->dispatched = false;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->body.v.len + *upload_size <= S->p->max_body) {
            if (tw_str_append(&r->body, upload, *upload_size) != 0)
                return MHD_NO;
        } else {
            r->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&r->lock);
    bool have = r->ready;
    r->ready = false;
    pthread_mutex_unlock(&r->lock);
    if (have) // made while the connection was suspended
        return send_buf(r, r->status, r->ctype, tw_str_cstr(&r->resp), r->resp.v.len,
                        r->status == 429 || r->status == 503 ? "1" : NULL);
    if (r->dispatched)
        return MHD_YES;
    r->dispatched = true;
    if (r->too_big)
        return send_error(r, 413, "body_too_large", "the body is over the limit of %zu bytes",
                          S->p->max_body);
    return dispatch(r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)c;
    struct server *S = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    char status[16];
    snprintf(status, sizeof status, "%u", r->status ? r->status : 499);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status == 200)
        snprintf(status, sizeof status, "499"); // the client went away (nginx's code)
    const char *labels[2] = { routes[r->route].path, status };
    tw_metric_add(S->m_req, labels, 1);
    tw_metric_observe(S->m_lat, labels, now_s() - r->t0);
    pthread_mutex_lock(&r->lock);
    r->closed = true;
    bool active = r->job_active;
    if (active)
        atomic_store(&r->job.cancel, true);
    pthread_mutex_unlock(&r->lock);
    if (active && r->eng)
        tw_sched_wake(r->eng->sched);
    req_release(r);
    in_flight(S, &S->active, -1);
}

// ---- metrics read at scrape time

static struct tw_sched_stats stats_of(struct server *S)
{
    struct tw_sched_stats st = { 0 };
    struct engine *e = engine_get(S);
    if (e)
        tw_sched_stats(e->sched, &st);
    engine_put(S, e);
    return st;
}

static double g_queue(void *ud)
{
    return stats_of(ud).queued;
}

static double g_busy(void *ud)
{
    return stats_of(ud).busy;
}

static double g_slots(void *ud)
{
    return stats_of(ud).n_slots;
}

static double g_kv(void *ud)
{
    struct tw_sched_stats st = stats_of(ud);
    return st.kv_pages > 0 ? (double)st.kv_pages_used / st.kv_pages : 0;
}

static double g_preempted(void *ud)
{
    return (double)stats_of(ud).preempted;
}

static double g_tps(void *ud)
{
    struct tw_sched_stats st = stats_of(ud);
    return st.busy_s > 0 ? (double)st.gen_tokens / st.busy_s : 0;
}

static int metrics_init(struct server *S)
{
    static const double lat[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                  1,     2.5,  5,     10,   30,  60,   120 };
    static const double ttft[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
    const char *rs[2] = { "route", "status" };
    int rc = tw_metrics_new(&S->metrics);
    if (!rc)
        rc = tw_metrics_counter(S->metrics, "twin_http_requests_total",
                                "HTTP requests by route and status", 2, rs, &S->m_req);
    if (!rc)
        rc = tw_metrics_histogram(S->metrics, "twin_http_request_duration_seconds",
                                  "HTTP request latency by route and status", 2, rs, lat,
                                  sizeof lat / sizeof *lat, &S->m_lat);
    if (!rc)
        rc = tw_metrics_histogram(S->metrics, "twin_time_to_first_token_seconds",
                                  "time from a generation's arrival to its first token", 0, NULL,
                                  ttft, sizeof ttft / sizeof *ttft, &S->m_ttft);
    if (!rc)
        rc = tw_metrics_counter(S->metrics, "twin_prompt_tokens_total", "prompt tokens", 0, NULL,
                                &S->m_ptok);
    if (!rc)
        rc = tw_metrics_counter(S->metrics, "twin_generated_tokens_total", "generated tokens", 0,
                                NULL, &S->m_gtok);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_tokens_per_second",
                                 "generated tokens per second of forward steps", g_tps, S);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_queue_depth", "generations waiting for a slot",
                                 g_queue, S);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_slots_busy", "slots generating", g_busy, S);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_slots", "slots in all", g_slots, S);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_kv_cache_usage_ratio",
                                 "pages of the shared KV cache in use", g_kv, S);
    if (!rc)
        rc = tw_metrics_gauge_fn(S->metrics, "twin_preempted_sequences",
                                 "sequences preempted for KV cache pages since the start",
                                 g_preempted, S);
    return rc;
}

// ---- startup and shutdown

static int open_encoder(struct server *S, struct encoder *e, const char *path, bool rerank)
{
    int rc = tw_session_open(path, S->p->threads, 0, &e->s);
    if (!rc && rerank && e->s.m->cfg.arch != TW_ARCH_BERT_CLS)
        rc = tw_error_set(TW_EINVAL, "%s: a %s is not a cross-encoder", path, e->s.m->arch_name);
    if (!rc && !rerank && e->s.m->cfg.arch == TW_ARCH_BERT_CLS)
        rc = tw_error_set(TW_EINVAL, "%s: a cross-encoder is not an embedder", path);
    if (rc) {
        tw_session_close(&e->s);
        return rc;
    }
    pthread_mutex_init(&e->lock, NULL);
    snprintf(e->id, sizeof e->id, "%s", last_component(path));
    return 0;
}

static int load(struct server *S)
{
    const struct tw_server_params *p = S->p;
    int rc = 0;
    if (p->model && (rc = engine_load(p, &S->eng)) != 0)
        return rc;
    if (p->embedder && (rc = open_encoder(S, &S->emb, p->embedder, false)) != 0)
        return rc;
    S->have_emb = p->embedder != NULL;
    if (p->reranker && (rc = open_encoder(S, &S->rr, p->reranker, true)) != 0)
        return rc;
    S->have_rr = p->reranker != NULL;
    if (p->home) {
        if ((rc = tw_home_open(p->home, &S->home)) != 0 ||
            (rc = tw_home_open(p->home, &S->rag_home)) != 0)
            return rc;
        rc = tw_retriever_open(S->rag_home, p->threads, &S->retr);
        if (rc == TW_ESTATE) {
            TW_LOG_INFO("serve: no feature run in %s: /rag is off", p->home);
            rc = 0;
        }
    }
    return rc;
}

static void unload(struct server *S)
{
    engine_put(S, S->eng);
    S->eng = NULL;
    if (S->have_emb) {
        tw_session_close(&S->emb.s);
        pthread_mutex_destroy(&S->emb.lock);
    }
    if (S->have_rr) {
        tw_session_close(&S->rr.s);
        pthread_mutex_destroy(&S->rr.lock);
    }
    tw_retriever_free(S->retr);
    tw_home_close(S->rag_home);
    tw_home_close(S->home);
}

// Waits until no request and no generation job is in flight or the time is up; true when none is.
static bool wait_idle(struct server *S, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&S->lock);
    while (S->active > 0 || S->jobs > 0)
        if (pthread_cond_timedwait(&S->idle, &S->lock, &ts) != 0)
            break;
    bool idle = S->active == 0 && S->jobs == 0;
    pthread_mutex_unlock(&S->lock);
    return idle;
}

int tw_server_run(const struct tw_server_params *params)
{
    struct tw_server_params p = *params;
    if (!p.host)
        p.host = "127.0.0.1";
    if (!p.max_body)
        p.max_body = 8u << 20;
    if (!p.idle_s)
        p.idle_s = 30;
    if (p.request_s <= 0)
        p.request_s = 600;
    if (p.grace_s <= 0)
        p.grace_s = 30;
    if (p.http_threads <= 0)
        p.http_threads = 4;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p.port) };
    if (inet_pton(AF_INET, p.host, &addr.sin_addr) != 1)
        return tw_error_set(TW_EINVAL, "--host %s: not an IPv4 address", p.host);
    tw_json_init();
    // Signals are taken by sigwait below, never by a handler on another thread.
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);

    struct server *S = tw_calloc(1, sizeof *S);
    if (!S)
        return tw_error_set(TW_ENOMEM, "out of memory");
    S->p = &p;
    S->loading = true;
    pthread_mutex_init(&S->lock, NULL);
    pthread_mutex_init(&S->rag_lock, NULL);
    pthread_mutex_init(&S->reload_lock, NULL);
    pthread_mutex_init(&S->home_lock, NULL);
    pthread_cond_init(&S->idle, NULL);
    int rc = metrics_init(S);
    if (!rc)
        rc = tw_pool_init(&S->workers, 5);
    if (!rc)
        rc = tw_pool_init(&S->tracer, 2);
    if (!rc) {
        S->d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                MHD_USE_ITC | MHD_USE_TCP_FASTOPEN * 0 | MHD_USE_ERROR_LOG,
            (uint16_t)p.port, NULL, NULL, handler, S, MHD_OPTION_SOCK_ADDR, &addr,
            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)p.http_threads, MHD_OPTION_CONNECTION_TIMEOUT,
            p.idle_s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 512u, MHD_OPTION_CONNECTION_LIMIT, 4096u,
            MHD_OPTION_NOTIFY_COMPLETED, completed, S, MHD_OPTION_END);
        if (!S->d)
            rc = tw_error_set(TW_EIO, "cannot listen on %s:%d (in use?)", p.host, p.port);
    }
    if (!rc) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(S->d, MHD_DAEMON_INFO_BIND_PORT);
        int port = di ? di->port : p.port;
        TW_LOG_INFO("serve: listening on http://%s:%d", p.host, port);
        if (p.on_listen)
            p.on_listen(p.ud, port);
        double t0 = now_s();
        rc = load(S);
        if (!rc) {
            TW_LOG_INFO("serve: ready in %.1f s", now_s() - t0);
            pthread_mutex_lock(&S->lock);
            S->loading = false;
            pthread_mutex_unlock(&S->lock);
        }
    }
    while (!rc) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload(S);
            continue;
        }
        TW_LOG_INFO("serve: %s: stopping (in-flight requests get %.0f s)",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT", p.grace_s);
        break;
    }
    if (S->d) {
        pthread_mutex_lock(&S->lock);
        S->stopping = true;
        pthread_mutex_unlock(&S->lock);
        MHD_socket ls = MHD_quiesce_daemon(S->d); // no new connections
        if (ls != MHD_INVALID_SOCKET)
            close(ls);
        if (!wait_idle(S, p.grace_s)) {
            TW_LOG_WARN("serve: the grace period ended: cancelling what is left");
            atomic_store(&S->cancel_all, true);
            pthread_mutex_lock(&S->lock);
            struct engine *e = S->eng;
            pthread_mutex_unlock(&S->lock);
            if (e)
                tw_sched_wake(e->sched);
            wait_idle(S, 5);
        }
        MHD_stop_daemon(S->d);
    }
    tw_pool_free(S->workers);
    tw_pool_free(S->tracer);
    unload(S);
    tw_metrics_free(S->metrics);
    pthread_cond_destroy(&S->idle);
    pthread_mutex_destroy(&S->lock);
    pthread_mutex_destroy(&S->rag_lock);
    pthread_mutex_destroy(&S->reload_lock);
    pthread_mutex_destroy(&S->home_lock);
    tw_free(S);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
