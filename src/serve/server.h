// twin's HTTP server (`twin serve`): libmicrohttpd's thread pool over epoll in front of the
// continuous-batching scheduler (sched.h), the embedder and reranker, and the RAG pipeline.
// Routes: the OpenAI API (POST /v1/chat/completions and /v1/completions, streamed as
// Server-Sent Events with "stream": true; POST /v1/embeddings; GET /v1/models), POST
// /v1/rerank, POST /tokenize and /detokenize (llama.cpp server's shapes), POST /rag (the
// reference's {"query"} -> {"answer"}, with the sources), GET /health, GET /metrics
// (Prometheus), POST /admin/reload. A connection that waits for the engine is suspended, not
// blocking a thread; the engine resumes it when there is something to send.
#ifndef TW_SERVE_SERVER_H
#define TW_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tw_server_params {
    const char *host;     // the address to listen on (default 127.0.0.1)
    int port;             // 0: any free port (on_ready gets it)
    const char *model;    // the generating model (HF folder or GGUF); NULL: none
    const char *name;     // its id in the API (default: the path's last component)
    const char *template; // chat template family (default: the tokenizer's)
    const char *embedder; // a sentence embedder for /v1/embeddings; NULL: none
    const char *reranker; // a cross-encoder for /v1/rerank and /rag; NULL: none
    const char *home;     // the twin home: traces, and /rag over its newest feature run
    int threads;          // CPU threads of the engine (0: all)
    const char *device;   // the engine's backend (tw_backend_open: cpu, cuda, cuda:N, auto)
    int32_t slots, n_ctx, n_batch, queue; // the scheduler's (sched.h; 0: its defaults)
    int32_t kv_tokens;                    // positions of the shared KV cache (0: slots x ctx)
    const char *const *api_keys;          // accepted bearer keys; none: no authentication
    size_t n_api_keys;
    bool auth_all;    // /health and /metrics need a key too
    const char *cors; // Access-Control-Allow-Origin (NULL: no CORS headers)
    size_t max_body;  // request bodies at most (default 8 MiB): 413 above
    unsigned idle_s;  // a connection idle this long is closed (default 30)
    double request_s; // a generation's time limit (default 600)
    double grace_s;   // on SIGTERM, in-flight requests get this long (default 30)
    int http_threads; // the HTTP thread pool (default 4)
    // Called once listening (before the models load): the port, for tests and scripts.
    void (*on_listen)(void *ud, int port);
    void *ud;
};

// Runs the server until SIGTERM or SIGINT (then: stop accepting, let in-flight requests
// finish within grace_s, cancel the rest, exit). SIGHUP reloads the model, as POST
// /admin/reload does. Returns 0 after a clean stop, or an error (the port is taken, a model
// does not load).
int tw_server_run(const struct tw_server_params *p);

#endif
