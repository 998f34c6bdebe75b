/* cubin_cache.c: the on-disk cache of JIT-compiled cubins, and what a model says about its load.
 *
 * The driver JIT-compiles a model's PTX at every process start (about 30 s for the Llama-3.2-1B
 * megakernel). gpu.c compiles it once with the driver's linker and keeps the cubin in
 * <dir>/<key>.cubin, where the key is a 128-bit FNV-1a hash of the PTX, its target, the device
 * (name, compute capability), the driver (version, library file) and the cache format; the next
 * start loads that file instead. This file has the driver-independent half: the hash, the cache
 * directory ($MLK_CACHE_DIR, else $XDG_CACHE_HOME/mlkc, else $HOME/.cache/mlkc; "off" disables
 * it), reading a file back with its checks, and the atomic write (a temporary file renamed over
 * the final name, so that readers never see half a file). Every file is the cubin followed by a
 * trailer (magic, format, payload size, key, payload hash): a truncated, corrupt or misplaced
 * file is recognized before the driver sees it, removed and compiled again. Nothing here fails a
 * model: a cache that cannot be read or written only costs the compile, and says why in the
 * model's load note (and on stderr under MLK_DEBUG).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- FNV-1a, 128 bits: offset basis 0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b ---- */

void mlk_hash_init(MlkHash *h) {
  h->hi = 0x6c62272e07bb0142u;
  h->lo = 0x62b821756295c58du;
}

void mlk_hash_bytes(MlkHash *h, const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t lo = h->lo, hi = h->hi;
  for (size_t i = 0; i < n; i++) {
    lo ^= p[i];
    /* (hi, lo) * (2^88 + 0x13b) mod 2^128, with 64-bit arithmetic only: lo * 0x13b is split into
     * 32-bit halves to get its carry into hi; lo * 2^88 lands in hi as lo << 24. */
    uint64_t a = (lo & 0xffffffffu) * 0x13bu, b = (lo >> 32) * 0x13bu;
    uint64_t nlo = a + (b << 32);
    hi = hi * 0x13bu + (b >> 32) + (nlo < a) + (lo << 24);
    lo = nlo;
  }
  h->lo = lo;
  h->hi = hi;
}

void mlk_hash_field(MlkHash *h, const void *data, size_t n) {
  /* The length first, so that fields cannot run into each other ("ab" "c" vs "a" "bc"). */
  uint64_t len = n;
  mlk_hash_bytes(h, &len, sizeof len);
  mlk_hash_bytes(h, data, n);
}

void mlk_hash_hex(MlkHash h, char out[33]) {
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.hi, (unsigned long long)h.lo);
}

/* ---- debugging, time ---- */

void mlk_debug(const char *fmt, ...) {
  const char *v = getenv("MLK_DEBUG");
  if (!v || !*v || !strcmp(v, "0"))
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("mlk: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

double mlk_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- the cache directory and file ---- */

#define CACHE_FORMAT 1u
#define CACHE_MAGIC "MLKCUBIN"
/* magic[8] format u32 reserved u32 size u64 key (hi, lo) u64 x 2 sum (hi, lo) u64 x 2, host order. */
enum { TRAILER_BYTES = 56, MAX_PAYLOAD = 1 << 30 };

uint32_t mlk_cubin_cache_format(void) { return CACHE_FORMAT; }

int mlk_cubin_cache_path(MlkHash key, char *path, size_t n, char *why, size_t wn) {
  const char *dir = getenv("MLK_CACHE_DIR"), *sub = "";
  *path = 0;
  if (dir && !strcmp(dir, "off")) {
    snprintf(why, wn, "cache off (MLK_CACHE_DIR=off)");
    return 0;
  }
  if (!dir || !*dir) {
    /* XDG base directories: a relative XDG_CACHE_HOME is invalid and ignored. */
    dir = getenv("XDG_CACHE_HOME"), sub = "/mlkc";
    if (!dir || dir[0] != '/')
      dir = getenv("HOME"), sub = "/.cache/mlkc";
  }
  if (!dir || !*dir) {
    snprintf(why, wn, "cache off (neither MLK_CACHE_DIR, XDG_CACHE_HOME nor HOME is set)");
    return 0;
  }
  char hex[33];
  mlk_hash_hex(key, hex);
  int len = snprintf(path, n, "%s%s/%s.cubin", dir, sub, hex);
  if (len < 0 || (size_t)len >= n) {
    *path = 0;
    snprintf(why, wn, "cache off (the cache path under '%.200s' is too long)", dir);
    return 0;
  }
  return 1;
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, sizeof v); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, sizeof v); }
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static void make_trailer(unsigned char t[TRAILER_BYTES], MlkHash key, const void *data, size_t size) {
  MlkHash sum;
  mlk_hash_init(&sum);
  mlk_hash_bytes(&sum, data, size);
  memcpy(t, CACHE_MAGIC, 8);
  put_u32(t + 8, CACHE_FORMAT);
  put_u32(t + 12, 0);
  put_u64(t + 16, size);
  put_u64(t + 24, key.hi);
  put_u64(t + 32, key.lo);
  put_u64(t + 40, sum.hi);
  put_u64(t + 48, sum.lo);
}

/* Reads all of fd into buf (n bytes); 0, or -1 with errno (EIO: the file ended early). */
static int read_all(int fd, unsigned char *buf, size_t n) {
  while (n) {
    ssize_t got = read(fd, buf, n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      if (got == 0)
        errno = EIO;
      return -1;
    }
    buf += got, n -= (size_t)got;
  }
  return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t n) {
  while (n) {
    ssize_t put = write(fd, buf, n);
    if (put < 0 && errno == EINTR)
      continue;
    if (put < 0)
      return -1;
    buf += put, n -= (size_t)put;
  }
  return 0;
}

int mlk_cubin_cache_read(const char *path, MlkHash key, void **data, size_t *size, char *why, size_t wn) {
  *data = NULL;
  *size = 0;
  *why = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) /* no file, or no directory: a plain miss */
      snprintf(why, wn, "open: %s", strerror(errno));
    return 0;
  }
  struct stat sb;
  unsigned char *buf = NULL, *t;
  size_t n = 0;
  if (fstat(fd, &sb)) {
    snprintf(why, wn, "fstat: %s", strerror(errno));
    goto bad;
  }
  if (!S_ISREG(sb.st_mode)) {
    snprintf(why, wn, "not a regular file");
    goto bad;
  }
  if (sb.st_size < TRAILER_BYTES + 1 || sb.st_size > (off_t)MAX_PAYLOAD + TRAILER_BYTES) {
    snprintf(why, wn, "%lld bytes is no cached cubin", (long long)sb.st_size);
    goto bad;
  }
  n = (size_t)sb.st_size;
  /* One byte more, zeroed: whatever parses the image as text cannot run off its end. */
  if (!(buf = calloc(n + 1, 1))) {
    snprintf(why, wn, "calloc(%zu bytes): %s", n + 1, strerror(errno));
    goto bad;
  }
  if (read_all(fd, buf, n)) {
    snprintf(why, wn, "read: %s", strerror(errno));
    goto bad;
  }
  size_t payload = n - TRAILER_BYTES;
  t = buf + payload;
  unsigned char want[TRAILER_BYTES];
  if (memcmp(t, CACHE_MAGIC, 8) || get_u32(t + 8) != CACHE_FORMAT) {
    snprintf(why, wn, "no trailer of cache format %u", CACHE_FORMAT);
    goto bad;
  }
  if (get_u64(t + 16) != payload) {
    snprintf(why, wn, "the trailer says %llu bytes of cubin, the file has %zu",
             (unsigned long long)get_u64(t + 16), payload);
    goto bad;
  }
  if (get_u64(t + 24) != key.hi || get_u64(t + 32) != key.lo) {
    snprintf(why, wn, "the file was written for another key");
    goto bad;
  }
  make_trailer(want, key, buf, payload);
  if (memcmp(t + 40, want + 40, 16)) {
    snprintf(why, wn, "checksum mismatch");
    goto bad;
  }
  close(fd);
  t[0] = 0; /* the payload stays NUL-terminated where the trailer began */
  *data = buf;
  *size = payload;
  return 1;
bad:
  free(buf);
  close(fd);
  mlk_cubin_cache_remove(path);
  return 0;
}

void mlk_cubin_cache_remove(const char *path) {
  /* A bad file is only a slower start: if it cannot be removed, the next write replaces it. */
  (void)unlink(path);
}

/* mkdir -p of the directory part of `path` (mode 0755 before the umask). */
static int make_parents(const char *path, char *why, size_t wn) {
  char *dir = strdup(path);
  if (!dir) {
    snprintf(why, wn, "strdup: %s", strerror(errno));
    return -1;
  }
  char *slash = strrchr(dir, '/');
  int rc = 0;
  if (slash && slash != dir) {
    *slash = 0;
    for (char *p = dir + 1;; p++) {
      if (*p != '/' && *p)
        continue;
      char c = *p;
      *p = 0;
      struct stat sb;
      /* An existing directory is fine even where mkdir fails otherwise (a read-only mount). */
      int err = mkdir(dir, 0755) ? errno : 0;
      if (err && err != EEXIST && (stat(dir, &sb) || !S_ISDIR(sb.st_mode))) {
        snprintf(why, wn, "mkdir %s: %s", dir, strerror(err));
        rc = -1;
        break;
      }
      if (!(*p = c))
        break;
    }
  }
  free(dir);
  return rc;
}

int mlk_cubin_cache_write(const char *path, MlkHash key, const void *data, size_t size, char *why, size_t wn) {
  static atomic_uint serial;
  if (size == 0 || size > MAX_PAYLOAD) {
    snprintf(why, wn, "a %zu-byte cubin is not cached", size);
    return -1;
  }
  if (make_parents(path, why, wn))
    return -1;
  /* Unique per process and per write: two threads or processes never share a temporary file. */
  size_t tn = strlen(path) + 64;
  char *tmp = malloc(tn);
  if (!tmp) {
    snprintf(why, wn, "malloc: %s", strerror(errno));
    return -1;
  }
  snprintf(tmp, tn, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&serial, 1u));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(why, wn, "open %s: %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  unsigned char t[TRAILER_BYTES];
  make_trailer(t, key, data, size);
  const char *call = NULL;
  if (write_all(fd, data, size) || write_all(fd, t, sizeof t))
    call = "write";
  if (close(fd) && !call)
    call = "close";
  if (!call && rename(tmp, path))
    call = "rename";
  int rc = 0;
  if (call) {
    snprintf(why, wn, "%s %s: %s", call, !strcmp(call, "rename") ? path : tmp, strerror(errno));
    (void)unlink(tmp);
    rc = -1;
  }
  free(tmp);
  return rc;
}

/* ---- what mlk.h reports (set by the GPU backend; zero on the simulator) ---- */

double mlk_model_load_ms(const mlk_model *m) { return m ? m->load_ms : 0.0; }
int mlk_model_cache_hit(const mlk_model *m) { return m ? m->cache_hit : 0; }
int mlk_model_builtin_cubin(const mlk_model *m) { return m ? m->builtin_cubin : 0; }
const char *mlk_model_load_note(const mlk_model *m) { return m ? m->load_note : ""; }
