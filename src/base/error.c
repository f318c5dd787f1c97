// Implements error.h: a thread-local message buffer and code.
#include "base/error.h"

#include <stdio.h>
#include <string.h>

#define MSG_CAP 1024

static _Thread_local char msg_buf[MSG_CAP];
static _Thread_local int msg_code;

int tw_error_setv(int code, const char *fmt, va_list ap)
{
    vsnprintf(msg_buf, sizeof msg_buf, fmt, ap);
    msg_code = code;
    return code;
}

int tw_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_error_setv(code, fmt, ap);
    va_end(ap);
    return code;
}

int tw_error_prefix(const char *fmt, ...)
{
    char out[MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    // out = prefix ": " message, cut to the buffer (the end of a long message is lost).
    size_t n = strlen(out);
    const char *parts[2] = { ": ", msg_buf };
    for (int i = 0; i < 2; i++) {
        size_t len = strlen(parts[i]);
        if (len > sizeof out - 1 - n)
            len = sizeof out - 1 - n;
        memcpy(out + n, parts[i], len);
        n += len;
    }
    out[n] = '\0';
    memcpy(msg_buf, out, n + 1);
    return msg_code;
}

const char *tw_error_msg(void)
{
    return msg_buf;
}

int tw_error_code(void)
{
    return msg_code;
}

void tw_error_clear(void)
{
    msg_buf[0] = '\0';
    msg_code = TW_OK;
}

const char *tw_strerror(int code)
{
    switch (code) {
    case TW_OK:
        return "ok";
    case TW_ENOMEM:
        return "out of memory";
    case TW_EINVAL:
        return "invalid input";
    case TW_EIO:
        return "input/output error";
    case TW_ENOENT:
        return "not found";
    case TW_EEXIST:
        return "already exists";
    case TW_EFORMAT:
        return "malformed data";
    case TW_EOVERFLOW:
        return "size overflow";
    case TW_ELIMIT:
        return "over the limit";
    case TW_EUNSUPPORTED:
        return "not supported";
    case TW_ESTATE:
        return "wrong state";
    case TW_ECANCELED:
        return "canceled";
    case TW_EDB:
        return "database error";
    case TW_EDEVICE:
        return "device error";
    }
    return "unknown error";
}
