// twin serve: the HTTP server (serve/server.h) — the OpenAI API, /rag, embeddings, reranking,
// health and metrics — until SIGTERM.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "base/str.h"
#include "cli/cli.h"
#include "cli/model_args.h"
#include "cli/text_args.h"
#include "serve/server.h"
#include "store/home.h"
#include "store/registry.h"

#define MAX_KEYS 64

struct serve_args {
    struct tw_server_params p;
    const char *keys[MAX_KEYS];
    size_t n_keys;
    char *key_file; // the file's text; keys point into it
    bool no_home;
    char model_path[4096]; // --model's registry reference resolved (--no-home)
};

static void on_listen(void *ud, int port)
{
    const struct serve_args *a = ud;
    fprintf(stderr, "twin serve: listening on http://%s:%d\n", a->p.host, port);
    fflush(stderr);
}

static int add_key(const struct tw_verb *v, struct serve_args *a, const char *key)
{
    if (a->n_keys == MAX_KEYS)
        return tw_cli_usage_error(v, "at most %d API keys", MAX_KEYS);
    a->keys[a->n_keys++] = key;
    return TW_EXIT_OK;
}

// One key per line; blank lines and lines starting with # are skipped.
static int read_keys(const struct tw_verb *v, struct serve_args *a, const char *path)
{
    size_t len;
    if (a->key_file || tw_file_read(path, 1 << 20, &a->key_file, &len) != 0)
        return a->key_file ? tw_cli_usage_error(v, "one --api-key-file at most") : tw_cli_fail();
    char *s = a->key_file;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;
        int rc = add_key(v, a, line);
        if (rc)
            return rc;
    }
    if (a->n_keys == 0)
        return tw_cli_usage_error(v, "%s holds no API key", path);
    return TW_EXIT_OK;
}

static int parse(const struct tw_verb *v, int argc, char **argv, struct serve_args *a)
{
    struct tw_server_params *p = &a->p;
    for (int i = 1; i < argc; i++) {
        const char *val;
        long n;
        int rc = TW_EXIT_OK;
        if (tw_cli_opt(argc, argv, &i, "--model", &val))
            p->model = val;
        else if (tw_cli_opt(argc, argv, &i, "--name", &val))
            p->name = val;
        else if (tw_cli_opt(argc, argv, &i, "--template", &val))
            p->template = val;
        else if (tw_cli_opt(argc, argv, &i, "--embedder", &val))
            p->embedder = val;
        else if (tw_cli_opt(argc, argv, &i, "--reranker", &val))
            p->reranker = val;
        else if (tw_cli_opt(argc, argv, &i, "--host", &val))
            p->host = val;
        else if (tw_cli_opt(argc, argv, &i, "--port", &val))
            rc = tw_cli_opt_long(v, "--port", val, 0, 65535, &n), p->port = (int)n;
        else if (tw_cli_opt(argc, argv, &i, "--device", &val))
            rc = tw_cli_device_ok(val) ? (p->device = val, 0)
                                       : tw_cli_usage_error(v, "--device needs cpu, cuda, "
                                                               "cuda:N or auto");
        else if (tw_cli_opt(argc, argv, &i, "--threads", &val))
            rc = tw_cli_opt_long(v, "--threads", val, 0, 1024, &n), p->threads = (int)n;
        else if (tw_cli_opt(argc, argv, &i, "--slots", &val))
            rc = tw_cli_opt_long(v, "--slots", val, 1, 1024, &n), p->slots = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--ctx", &val))
            rc = tw_cli_opt_long(v, "--ctx", val, 16, 1 << 20, &n), p->n_ctx = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--kv-tokens", &val))
            rc = tw_cli_opt_long(v, "--kv-tokens", val, 16, 1L << 30, &n),
            p->kv_tokens = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--batch", &val))
            rc = tw_cli_opt_long(v, "--batch", val, 1, 1 << 16, &n), p->n_batch = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--queue", &val))
            rc = tw_cli_opt_long(v, "--queue", val, 1, 1 << 20, &n), p->queue = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--http-threads", &val))
            rc = tw_cli_opt_long(v, "--http-threads", val, 1, 256, &n), p->http_threads = (int)n;
        else if (tw_cli_opt(argc, argv, &i, "--max-body", &val))
            rc = tw_cli_opt_long(v, "--max-body", val, 1024, 1L << 30, &n),
            p->max_body = (size_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--idle-timeout", &val))
            rc = tw_cli_opt_long(v, "--idle-timeout", val, 1, 86400, &n), p->idle_s = (unsigned)n;
        else if (tw_cli_opt(argc, argv, &i, "--timeout", &val))
            rc = tw_cli_opt_long(v, "--timeout", val, 1, 86400, &n), p->request_s = (double)n;
        else if (tw_cli_opt(argc, argv, &i, "--grace", &val))
            rc = tw_cli_opt_long(v, "--grace", val, 1, 3600, &n), p->grace_s = (double)n;
        else if (tw_cli_opt(argc, argv, &i, "--api-key", &val))
            rc = val && *val ? add_key(v, a, val) : tw_cli_usage_error(v, "--api-key needs a KEY");
        else if (tw_cli_opt(argc, argv, &i, "--api-key-file", &val))
            rc = val ? read_keys(v, a, val) : tw_cli_usage_error(v, "--api-key-file needs a FILE");
        else if (tw_cli_opt(argc, argv, &i, "--cors", &val))
            rc = val && *val ? (p->cors = val, 0)
                             : tw_cli_usage_error(v, "--cors needs an ORIGIN (or *)");
        else if (strcmp(argv[i], "--auth-all") == 0)
            p->auth_all = true;
        else if (strcmp(argv[i], "--no-home") == 0)
            a->no_home = true;
        else
            return tw_cli_usage_error(v, "unknown argument '%s'", argv[i]);
        if (rc)
            return rc;
    }
    if (!p->model && !p->embedder && !p->reranker && a->no_home)
        return tw_cli_usage_error(v, "give at least one of --model, --embedder, --reranker");
    return TW_EXIT_OK;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_serve;
    struct serve_args a = { 0 };
    a.p.host = "127.0.0.1";
    a.p.port = 8080;
    int rc = parse(v, argc, argv, &a);
    if (rc) {
        tw_free(a.key_file);
        return rc;
    }
    a.p.api_keys = a.keys;
    a.p.n_api_keys = a.n_keys;
    a.p.on_listen = on_listen;
    a.p.ud = &a;
    if (!a.no_home) {
        struct tw_home *h;
        if (tw_home_open(cli->home, &h) == 0) {
            // No --model: the promoted model, which the server looks up again at each reload.
            struct tw_model_ref r;
            if (!a.p.model && tw_registry_promoted(h, &r) == 0) {
                a.p.model = "@promoted";
                fprintf(stderr,
                        "twin serve: the promoted model %s:%lld (a reload follows "
                        "twin models promote)\n",
                        r.name, (long long)r.version);
            }
            tw_home_close(h);
            a.p.home = cli->home;
        } else {
            fprintf(stderr,
                    "twin serve: no twin home at %s (%s): requests are not traced and /rag is "
                    "off\n",
                    cli->home, tw_error_msg());
        }
    }
    if (!a.p.model && !a.p.embedder && !a.p.reranker) {
        tw_free(a.key_file);
        return tw_cli_usage_error(v, "give at least one of --model, --embedder, --reranker (or "
                                     "promote a model: twin models promote REF)");
    }
    if (a.no_home && a.p.model) { // the server has no home: a reference is resolved here
        struct tw_cli_model m = { .model = a.p.model, .home = cli->home };
        if (tw_cli_model_resolve(&m) != 0) {
            tw_free(a.key_file);
            return tw_cli_fail();
        }
        snprintf(a.model_path, sizeof a.model_path, "%s", m.model);
        a.p.model = a.model_path;
    }
    rc = tw_server_run(&a.p);
    tw_free(a.key_file);
    if (rc)
        return tw_cli_fail();
    fprintf(stderr, "twin serve: stopped\n");
    return TW_EXIT_OK;
}

const struct tw_verb tw_verb_serve = {
    .name = "serve",
    .summary = "the HTTP server: OpenAI API, /rag, embeddings, reranking, metrics",
    .usage =
        "usage: twin [--home DIR] serve [--model PATH] [--embedder PATH] [--reranker PATH]\n"
        "                  [--host 127.0.0.1] [--port 8080] [--slots 4] [--ctx N] [options]\n\n"
        "Serves the twin over HTTP until SIGTERM or SIGINT (in-flight requests finish within\n"
        "--grace seconds; the rest are cancelled). SIGHUP or POST /admin/reload loads the model\n"
        "again without dropping requests. Routes:\n"
        "  POST /v1/chat/completions, /v1/completions   OpenAI's; \"stream\": true for\n"
        "                      Server-Sent Events (stream_options.include_usage honoured)\n"
        "  POST /v1/embeddings (--embedder), POST /v1/rerank (--reranker), GET /v1/models\n"
        "  POST /tokenize {\"content\"}, POST /detokenize {\"tokens\"}\n"
        "  POST /rag {\"query\", \"k\", \"author\", \"category\", \"mode\", \"expand\"}: the\n"
        "                      RAG pipeline over the home's newest feature run (twin ask)\n"
        "  GET /health (503 while loading), GET /metrics (Prometheus)\n"
        "Generations share the model through continuous batching over --slots sequences;\n"
        "generations, /rag, embeddings and reranking are traced in the home (twin traces).\n\n"
        "  --model PATH        the generating model (a Hugging Face folder, a .gguf file or\n"
        "                      a registered model, NAME[:VERSION], looked up again at each\n"
        "                      reload); default: the home's promoted model (twin models)\n"
        "  --name NAME         its id in the API (default: the path's last component)\n"
        "  --template NAME     the chat template family (default: the tokenizer's)\n"
        "  --embedder PATH     a sentence embedder for /v1/embeddings\n"
        "  --reranker PATH     a cross-encoder for /v1/rerank and /rag\n"
        "  --host ADDR         the IPv4 address to listen on (default 127.0.0.1)\n"
        "  --port N            the port (default 8080; 0: any free port, printed)\n"
        "  --device D          cpu, cuda, cuda:N or auto: a GPU when there is one\n"
        "                      (default: $TWIN_DEVICE, else auto)\n"
        "  --threads N         the engine's CPU threads (default: all)\n"
        "  --slots N           sequences generated at once (default 4)\n"
        "  --ctx N             positions per slot (default: the model's, at most 4096)\n"
        "  --kv-tokens N       positions of the KV cache that the slots share, in pages\n"
        "                      (default: slots x ctx; at least ctx): fewer lets more\n"
        "                      slots fit, preempting sequences when it runs short\n"
        "  --batch N           tokens per forward step, prompt chunks included (default 512)\n"
        "  --queue N           requests waiting for a slot before 429 (default 4 x slots)\n"
        "  --api-key KEY       accept Authorization: Bearer KEY (repeatable)\n"
        "  --api-key-file F    keys, one per line\n"
        "  --auth-all          /health and /metrics need a key too (default: open)\n"
        "  --cors ORIGIN       send Access-Control-Allow-Origin: ORIGIN (or *) and answer\n"
        "                      preflights\n"
        "  --max-body BYTES    request bodies at most (default 8 MiB; 413 above)\n"
        "  --idle-timeout S    close connections idle this long (default 30)\n"
        "  --timeout S         a generation's time limit (default 600; \"timeout\" in a\n"
        "                      request may lower it)\n"
        "  --grace S           seconds in-flight requests get on SIGTERM (default 30)\n"
        "  --http-threads N    the HTTP threads (default 4)\n"
        "  --no-home           no traces and no /rag, even when the home exists\n",
    .run = run,
};
