// Errors: negative TW_E* codes returned by every function that can fail, plus one sentence
// for the user, kept per thread. A failing function calls tw_error_set (which returns the
// code, so `return tw_error_set(TW_EIO, "%s: %s", path, strerror(errno));` reads naturally);
// callers that add context call tw_error_prefix; the CLI prints tw_error_msg().
#ifndef TW_ERROR_H
#define TW_ERROR_H

#include <stdarg.h>

enum tw_err {
    TW_OK = 0,
    TW_ENOMEM = -1,       // an allocation failed
    TW_EINVAL = -2,       // bad argument or bad input data
    TW_EIO = -3,          // the operating system refused a read, write, open, ...
    TW_ENOENT = -4,       // a file or record does not exist
    TW_EEXIST = -5,       // it exists already
    TW_EFORMAT = -6,      // a file or message is malformed
    TW_EOVERFLOW = -7,    // a size or count does not fit its type
    TW_ELIMIT = -8,       // over a configured limit (file size, queue length, ...)
    TW_EUNSUPPORTED = -9, // valid but not handled (a dtype, an architecture, a version)
    TW_ESTATE = -10,      // called in the wrong state (a home not initialised, ...)
    TW_ECANCELED = -11,   // stopped by the user or a signal
    TW_EDB = -12,         // the database refused an operation
    TW_EDEVICE = -13,     // the GPU or its driver failed (a launch, a copy, the device lost)
};

// Records a message for this thread (printf format) and returns `code` unchanged.
int tw_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tw_error_setv(int code, const char *fmt, va_list ap);

// Puts "<context>: " in front of this thread's message (for callers adding the file name or
// the place); returns the current code.
int tw_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// This thread's last message ("" when none) and code (TW_OK when none).
const char *tw_error_msg(void);
int tw_error_code(void);
void tw_error_clear(void);

// A short name for a code: "out of memory", "bad input", ...
const char *tw_strerror(int code);

#endif
