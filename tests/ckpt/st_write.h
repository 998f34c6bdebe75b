/* st_write.h: writes safetensors checkpoints for the loader tests, well-formed or broken on
 * purpose, and the JSON files around them (index, config.json), in a temporary directory.
 *
 * A well-formed file: an 8-byte little-endian header length, the JSON header padded with spaces to
 * a multiple of 8 bytes, then the tensors' bytes one after another in the order given.
 */
#ifndef ST_WRITE_H
#define ST_WRITE_H

#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct StT {
  const char *name;
  const char *dtype; /* "BF16", "F16", "F32", "I32", ... */
  int rank;
  int64_t shape[4];
  const void *data;
  size_t bytes;
} StT;

static void st_die(const char *what, const char *path) {
  fprintf(stderr, "st_write: %s '%s' failed\n", what, path);
  exit(2);
}

/* A file of: header length `hlen`, the `hbytes` bytes of `header`, then `n` bytes of `data`. */
static inline void st_raw(const char *path, uint64_t hlen, const char *header, size_t hbytes,
                          const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    st_die("fopen", path);
  uint8_t len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (uint8_t)(hlen >> (8 * i));
  if (fwrite(len, 1, 8, f) != 8 || fwrite(header, 1, hbytes, f) != hbytes ||
      (n && fwrite(data, 1, n, f) != n) || fclose(f))
    st_die("write", path);
}

/* A file of exactly these bytes. */
static inline void st_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    st_die("fopen", path);
  if ((n && fwrite(data, 1, n, f) != n) || fclose(f))
    st_die("write", path);
}

static inline void st_text(const char *path, const char *text) { st_bytes(path, text, strlen(text)); }

/* The header of tensors t[0..n) laid out one after another, padded to 8 bytes; `extra` (may be
 * NULL) is spliced in as further members, e.g. "\"__metadata__\": {\"format\": \"pt\"}". */
static inline char *st_header(const StT *t, int n, const char *extra, size_t *len) {
  size_t cap = 256 + (extra ? strlen(extra) : 0);
  for (int i = 0; i < n; i++)
    cap += strlen(t[i].name) + 128;
  char *h = malloc(cap + 8);
  if (!h)
    st_die("malloc", "header");
  size_t k = (size_t)snprintf(h, cap, "{");
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    k += (size_t)snprintf(h + k, cap - k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                          t[i].name, t[i].dtype);
    for (int r = 0; r < t[i].rank; r++)
      k += (size_t)snprintf(h + k, cap - k, "%s%lld", r ? "," : "", (long long)t[i].shape[r]);
    k += (size_t)snprintf(h + k, cap - k, "],\"data_offsets\":[%llu,%llu]}",
                          (unsigned long long)off, (unsigned long long)(off + t[i].bytes));
    off += t[i].bytes;
  }
  if (extra)
    k += (size_t)snprintf(h + k, cap - k, "%s%s", n ? "," : "", extra);
  k += (size_t)snprintf(h + k, cap - k, "}");
  while (k % 8)
    h[k++] = ' ';
  h[k] = 0;
  *len = k;
  return h;
}

static inline void st_write(const char *path, const StT *t, int n, const char *extra) {
  size_t hlen, total = 0;
  char *h = st_header(t, n, extra, &hlen);
  for (int i = 0; i < n; i++)
    total += t[i].bytes;
  uint8_t *data = malloc(total + 1);
  if (!data)
    st_die("malloc", path);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    memcpy(data + off, t[i].data, t[i].bytes);
    off += t[i].bytes;
  }
  st_raw(path, hlen, h, hlen, data, total);
  free(data);
  free(h);
}

/* A model.safetensors.index.json mapping names[i] to files[i]. */
static inline void st_index(const char *path, const char *const *names, const char *const *files,
                            int n) {
  FILE *f = fopen(path, "w");
  if (!f)
    st_die("fopen", path);
  fprintf(f, "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "    \"%s\": \"%s\"%s\n", names[i], files[i], i + 1 < n ? "," : "");
  fprintf(f, "  }\n}\n");
  if (fclose(f))
    st_die("fclose", path);
}

/* The value of f16 bits h, computed independently of the runtime's conversion. */
static inline double st_f16_value(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return h & 0x8000 ? -v : v;
}

/* A fresh directory under $TMPDIR (or /tmp), removed with everything in it by st_rmdir. */
static inline char *st_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  static char dir[512];
  snprintf(dir, sizeof dir, "%s/mlk_ckpt_XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(dir))
    st_die("mkdtemp", dir);
  return dir;
}

static int st_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static inline void st_rmdir(const char *dir) { nftw(dir, st_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

#endif /* ST_WRITE_H */
