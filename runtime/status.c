/* status.c: the runtime's error reporting and small helpers every other file uses.
 *
 * Every API call returns an mlk_status and leaves a readable message in a thread-local buffer
 * (mlk_last_error), so an application prints one string and knows which tensor, CUDA call or wait
 * failed. Messages can be long (a PTX JIT log is reported in full), so the buffer grows on the heap;
 * a fixed fallback keeps a message even when that allocation fails. Also here: dtype sizes and
 * names, bf16 conversion, and environment parsing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char *err_buf;
static _Thread_local size_t err_cap;
static _Thread_local char err_fallback[512];
static _Thread_local const char *err_msg;

/* A thread-exit destructor frees each thread's buffer (application threads come and go). */
static pthread_key_t err_key;
static int err_key_ok;
static pthread_once_t err_once = PTHREAD_ONCE_INIT;
static void make_err_key(void) { err_key_ok = pthread_key_create(&err_key, free) == 0; }

const char *mlk_last_error(void) { return err_msg ? err_msg : ""; }

/* Stores a finished message, growing the heap buffer as needed. */
static void store_message(const char *msg, size_t len) {
  if (len + 1 > err_cap) {
    size_t cap = err_cap ? err_cap : 256;
    while (cap < len + 1)
      cap *= 2;
    char *p = realloc(err_buf, cap);
    if (!p) {
      snprintf(err_fallback, sizeof err_fallback, "%s", msg);
      err_msg = err_fallback;
      return;
    }
    err_buf = p;
    err_cap = cap;
    pthread_once(&err_once, make_err_key);
    if (err_key_ok)
      pthread_setspecific(err_key, err_buf);
  }
  memmove(err_buf, msg, len + 1);
  err_msg = err_buf;
}

/* Formats into a temporary heap string, because the arguments may point into the current message
 * (mlk_prefix_error formats the old message into the new one). */
static void store_formatted(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  if (n < 0) {
    static const char msg[] = "(error message could not be formatted)";
    va_end(ap2);
    store_message(msg, sizeof msg - 1);
    return;
  }
  char *tmp = malloc((size_t)n + 1);
  if (!tmp) {
    vsnprintf(err_fallback, sizeof err_fallback, fmt, ap2);
    va_end(ap2);
    err_msg = err_fallback;
    return;
  }
  vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  store_message(tmp, (size_t)n);
  free(tmp);
}

mlk_status mlk_set_errorv(mlk_status s, const char *fmt, va_list ap) {
  store_formatted(fmt, ap);
  return s;
}

mlk_status mlk_set_error(mlk_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  store_formatted(fmt, ap);
  va_end(ap);
  return s;
}

const char *mlk_basename(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static mlk_status set_error_fmt(mlk_status s, const char *fmt, ...) MLK_PRINTF(2, 3);
static mlk_status set_error_fmt(mlk_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  store_formatted(fmt, ap);
  va_end(ap);
  return s;
}

mlk_status mlk_set_error_at(mlk_status s, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  store_formatted(fmt, ap);
  va_end(ap);
  return set_error_fmt(s, "%s:%d: %s", mlk_basename(file), line, mlk_last_error());
}

mlk_status mlk_prefix_error(mlk_status s, const char *prefix) {
  return set_error_fmt(s, "%s%s", prefix, mlk_last_error());
}

void *mlk_calloc_at(size_t n, size_t size, const char *what, const char *file, int line) {
  /* A zero-size request still gets a unique pointer so that NULL always means failure. */
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p)
    mlk_set_error_at(MLK_ERR_NOMEM, file, line, "calloc(%zu x %zu bytes for %s) failed: %s", n, size,
                     what, strerror(errno));
  return p;
}

mlk_status mlk_env_int(const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out) {
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = dflt;
    return MLK_OK;
  }
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi)
    return mlk_set_error(MLK_ERR_INVALID, "environment variable %s='%s' is not an integer in [%lld, %lld]",
                         name, v, (long long)lo, (long long)hi);
  *out = x;
  return MLK_OK;
}

const char *mlk_status_name(mlk_status s) {
  switch (s) {
  case MLK_OK: return "MLK_OK";
  case MLK_ERR_INVALID: return "MLK_ERR_INVALID";
  case MLK_ERR_NO_GPU: return "MLK_ERR_NO_GPU";
  case MLK_ERR_CUDA: return "MLK_ERR_CUDA";
  case MLK_ERR_NOMEM: return "MLK_ERR_NOMEM";
  case MLK_ERR_DEADLOCK: return "MLK_ERR_DEADLOCK";
  case MLK_ERR_IO: return "MLK_ERR_IO";
  }
  return "MLK_ERR_UNKNOWN";
}

/* ORDER: mirrors MlkDType in mlk_desc.h (and the table in compiler/sema.c). */
static const struct {
  const char *name;
  size_t size;
} dtypes[MLK_DTYPE_COUNT] = {
    [MLK_F32] = {"f32", 4}, [MLK_BF16] = {"bf16", 2}, [MLK_F16] = {"f16", 2},
    [MLK_I32] = {"i32", 4}, [MLK_I8] = {"i8", 1},     [MLK_U8] = {"u8", 1},
};

size_t mlk_dtype_size(MlkDType t) {
  return (unsigned)t < MLK_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *mlk_dtype_name(MlkDType t) {
  return (unsigned)t < MLK_DTYPE_COUNT ? dtypes[t].name : "?";
}

uint16_t mlk_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  /* Rounding a NaN could carry into the exponent and make it an infinity: keep the sign and the
   * top mantissa bits and force a quiet bit instead. */
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x0040u);
  /* Round to nearest, ties to even: add just under half an ulp, plus one if the kept lsb is odd. */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float mlk_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
