/* kv.c: the page allocator of the paged KV caches, and sequences over it.
 *
 * The kernels only follow a page table: row b's position p lives in physical page
 * table[b * pages_per_seq + p / page] of the pool (mlk_desc.h). What fills the table is decided
 * here. At first every row owns a fixed range of pages (the layout model.c always had). The first
 * sequence switches the model to managed pages for good: a stack of free pages and a reference
 * count per page; each sequence holds its own list of pages, one per `page` tokens it reserved;
 * a fork shares them all (counts + 1); an append takes pages from the stack and, when the page it
 * writes into is shared, first copies it to a page of its own (copy on write, so the partial last
 * page of a common prefix is copied by whoever writes first, full pages are never copied); a
 * page whose count drops to 0 goes back on the stack. Before a run the table rows of the batch's
 * sequences are rebuilt and uploaded when something changed. Every cache of the model follows
 * the same tables, so they must have the same page size; page p of each pool belongs to the same
 * sequences.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct mlk_seq {
  mlk_model *m;
  int64_t len;       /* positions reserved */
  int32_t *pages;    /* physical page of each page of the sequence: ceil(len / page) of them */
  int64_t npages, cap;
  int64_t row;       /* the first batch row it is bound to, or -1 */
  int64_t nrows;     /* rows it is bound to, row .. row + nrows - 1 (several: a prompt chunk) */
  MlkSampler sampler; /* its sampling settings and random stream (sampling.c) */
  mlk_seq *prev, *next;
};

typedef struct MlkKv {
  int64_t npages;    /* pages in each pool */
  int64_t pps;       /* page-table columns: the most pages a sequence holds */
  int64_t page;      /* tokens per page (every cache's), 0 when caches differ: no sequences */
  int managed;       /* a sequence was created: tables come from sequences */
  int dirty;         /* the device page tables differ from what the sequences say */
  int32_t *refs;     /* per page: sequences holding it */
  int32_t *free;     /* stack of free pages, the next one on top */
  int64_t nfree;
  mlk_seq **rows;    /* per batch row (batch_max): its sequence, or NULL */
  mlk_seq *seqs;     /* every live sequence */
  int32_t *table;    /* host copy of a page table: batch_max * pps */
  uint64_t created;  /* sequences created so far: the default seed of the next */
} MlkKv;

static mlk_status upload_tables(mlk_model *m) {
  MlkKv *kv = m->kv;
  for (int c = 0; c < m->desc->ncaches; c++) {
    int t = m->desc->caches[c].pages_tensor;
    mlk_status st = m->be->ops->upload(m, t, kv->table, m->cap[t]);
    if (st)
      return st;
  }
  kv->dirty = 0;
  return MLK_OK;
}

mlk_status mlk_kv_create(mlk_model *m) {
  const MlkModelDesc *d = m->desc;
  if (d->ncaches == 0)
    return MLK_OK;
  MlkKv *kv = MLK_CALLOC(1, sizeof *kv, "the KV page allocator");
  if (!kv)
    return MLK_ERR_NOMEM;
  m->kv = kv;
  kv->npages = m->rt[MLK_RT_PAGES(0)];
  kv->pps = m->rt[MLK_RT_PAGES_PER_SEQ(0)];
  kv->page = d->caches[0].page;
  for (int c = 1; c < d->ncaches; c++)
    if (d->caches[c].page != kv->page || m->rt[MLK_RT_PAGES(c)] != kv->npages)
      kv->page = 0;
  size_t entries = (size_t)(m->batch_max * kv->pps);
  if (!(kv->refs = MLK_CALLOC((size_t)kv->npages, sizeof *kv->refs, "KV page counts")) ||
      !(kv->free = MLK_CALLOC((size_t)kv->npages, sizeof *kv->free, "KV free pages")) ||
      !(kv->rows = MLK_CALLOC((size_t)m->batch_max, sizeof *kv->rows, "KV rows")) ||
      !(kv->table = MLK_CALLOC(entries, sizeof *kv->table, "a KV page table"))) {
    mlk_kv_free(m);
    return MLK_ERR_NOMEM;
  }
  /* The fixed layout, where the pools hold it (each cache's own geometry: they may differ). */
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    int64_t pps = m->rt[MLK_RT_PAGES_PER_SEQ(c)], n = m->batch_max * pps;
    int fits = m->rt[MLK_RT_PAGES(c)] >= n;
    for (int64_t p = 0; p < n; p++)
      kv->table[p] = fits ? (int32_t)p : -1;
    mlk_status st = m->be->ops->upload(m, cd->pages_tensor, kv->table, (size_t)n * sizeof(int32_t));
    if (st) {
      mlk_kv_free(m);
      return st;
    }
  }
  return MLK_OK;
}

void mlk_kv_free(mlk_model *m) {
  MlkKv *kv = m->kv;
  if (!kv)
    return;
  while (kv->seqs) {
    mlk_seq *s = kv->seqs;
    kv->seqs = s->next;
    free(s->pages);
    free(s);
  }
  free(kv->refs);
  free(kv->free);
  free(kv->rows);
  free(kv->table);
  free(kv);
  m->kv = NULL;
}

int64_t mlk_model_kv_pages(const mlk_model *m) { return m && m->kv ? m->kv->npages : 0; }

int64_t mlk_model_kv_pages_free(const mlk_model *m) {
  if (!m || !m->kv)
    return 0;
  return m->kv->managed ? m->kv->nfree : 0;
}

/* ---- sequences ---- */

static mlk_status no_kv(const mlk_model *m, const char *fn) {
  if (!m)
    return mlk_set_error(MLK_ERR_INVALID, "%s: model is NULL", fn);
  if (!m->kv)
    return mlk_set_error(MLK_ERR_INVALID, "%s: model '%s' has no KV cache", fn, m->desc->name);
  if (!m->kv->page)
    return mlk_set_error(MLK_ERR_INVALID, "%s: the KV caches of model '%s' have different page sizes "
                         "or pools: sequences need them alike", fn, m->desc->name);
  return MLK_OK;
}

/* The first sequence: every page free, no row bound, tables to be rebuilt. */
static void go_managed(MlkKv *kv, int64_t batch_max) {
  kv->managed = 1;
  kv->nfree = kv->npages;
  for (int64_t i = 0; i < kv->npages; i++) {
    kv->free[i] = (int32_t)(kv->npages - 1 - i); /* page 0 on top */
    kv->refs[i] = 0;
  }
  for (int64_t b = 0; b < batch_max; b++)
    kv->rows[b] = NULL;
  kv->dirty = 1;
}

static mlk_seq *new_seq(mlk_model *m, int64_t cap) {
  mlk_seq *s = MLK_CALLOC(1, sizeof *s, "a sequence");
  if (!s)
    return NULL;
  s->m = m;
  s->row = -1;
  s->sampler = mlk_sampler_make(&(mlk_sampling){.seed = m->kv->created++});
  s->cap = cap > 4 ? cap : 4;
  if (!(s->pages = MLK_CALLOC((size_t)s->cap, sizeof *s->pages, "a sequence's pages"))) {
    free(s);
    return NULL;
  }
  MlkKv *kv = m->kv;
  s->next = kv->seqs;
  if (kv->seqs)
    kv->seqs->prev = s;
  kv->seqs = s;
  return s;
}

mlk_status mlk_seq_create(mlk_model *m, mlk_seq **out) {
  if (!out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_seq_create: out is NULL");
  *out = NULL;
  mlk_status st = no_kv(m, "mlk_seq_create");
  if (st)
    return st;
  if (!m->kv->managed)
    go_managed(m->kv, m->batch_max);
  return (*out = new_seq(m, 0)) ? MLK_OK : MLK_ERR_NOMEM;
}

static void release(MlkKv *kv, int32_t p) {
  if (--kv->refs[p] == 0)
    kv->free[kv->nfree++] = p;
}

void mlk_seq_free(mlk_seq *s) {
  if (!s)
    return;
  MlkKv *kv = s->m->kv;
  for (int64_t i = 0; i < s->npages; i++)
    release(kv, s->pages[i]);
  for (int64_t b = s->row; b >= 0 && b < s->row + s->nrows; b++) {
    kv->rows[b] = NULL;
    kv->dirty = 1;
  }
  if (s->prev)
    s->prev->next = s->next;
  else
    kv->seqs = s->next;
  if (s->next)
    s->next->prev = s->prev;
  free(s->pages);
  free(s);
}

mlk_status mlk_seq_fork(mlk_seq *s, mlk_seq **out) {
  if (!s || !out)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_seq_fork: %s is NULL", s ? "out" : "the sequence");
  *out = NULL;
  mlk_seq *c = new_seq(s->m, s->npages);
  if (!c)
    return MLK_ERR_NOMEM;
  MlkKv *kv = s->m->kv;
  for (int64_t i = 0; i < s->npages; i++) {
    c->pages[i] = s->pages[i];
    kv->refs[s->pages[i]]++;
  }
  c->npages = s->npages;
  c->len = s->len;
  c->sampler = s->sampler; /* the same settings, and the stream where the parent's is */
  *out = c;
  return MLK_OK;
}

/* Copies page `from` into page `to` in every layer of every cache's pool. */
static mlk_status copy_page(mlk_model *m, int32_t from, int32_t to) {
  const MlkModelDesc *d = m->desc;
  for (int c = 0; c < d->ncaches; c++) {
    const MlkCacheDesc *cd = &d->caches[c];
    int64_t npages = m->rt[MLK_RT_PAGES(c)];
    size_t es = mlk_dtype_size(cd->dtype);
    size_t bytes = (size_t)(2 * cd->kv_heads * cd->page * cd->head_dim) * es;
    for (int64_t l = 0; l < cd->layers; l++) {
      size_t src = (size_t)mlk_cache_offset(cd, npages, l, from, 0, 0, 0) * es;
      size_t dst = (size_t)mlk_cache_offset(cd, npages, l, to, 0, 0, 0) * es;
      mlk_status st = m->be->ops->copy_range(m, cd->tensor, dst, src, bytes);
      if (st)
        return st;
    }
  }
  return MLK_OK;
}

mlk_status mlk_seq_append(mlk_seq *s, int64_t ntokens) {
  if (!s)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_seq_append: the sequence is NULL");
  mlk_model *m = s->m;
  MlkKv *kv = m->kv;
  if (ntokens < 1 || ntokens > m->context - s->len)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_seq_append: %lld tokens onto a sequence of %lld: "
                         "append 1 or more, up to the context of %lld tokens "
                         "(mlk_model_options.kv_context)", (long long)ntokens, (long long)s->len,
                         (long long)m->context);
  int64_t want = (s->len + ntokens + kv->page - 1) / kv->page;
  /* the page the first new position falls into is written: copy it first if it is shared */
  int cow = s->len % kv->page && kv->refs[s->pages[s->npages - 1]] > 1;
  int64_t need = want - s->npages + cow;
  if (need > kv->nfree)
    return mlk_set_error(MLK_ERR_NOMEM, "the KV caches of model '%s' are out of pages: a sequence of "
                         "%lld tokens appending %lld needs %lld more, %lld of %lld are free "
                         "(mlk_model_options.kv_pages)", m->desc->name, (long long)s->len,
                         (long long)ntokens, (long long)need, (long long)kv->nfree,
                         (long long)kv->npages);
  if (want > s->cap) {
    int64_t cap = want > 2 * s->cap ? want : 2 * s->cap;
    int32_t *p = realloc(s->pages, (size_t)cap * sizeof *p);
    if (!p)
      return MLK_ERROR_AT(MLK_ERR_NOMEM, "realloc(%lld pages of a sequence) failed", (long long)cap);
    s->pages = p;
    s->cap = cap;
  }
  if (cow) {
    int32_t old = s->pages[s->npages - 1], fresh = kv->free[kv->nfree - 1];
    mlk_status st = copy_page(m, old, fresh);
    if (st)
      return st;
    kv->nfree--;
    kv->refs[fresh] = 1;
    kv->refs[old]--; /* still held by another sequence: never 0 here */
    s->pages[s->npages - 1] = fresh;
  }
  while (s->npages < want) {
    int32_t p = kv->free[--kv->nfree];
    kv->refs[p] = 1;
    s->pages[s->npages++] = p;
  }
  s->len += ntokens;
  kv->dirty = 1;
  return MLK_OK;
}

int64_t mlk_seq_length(const mlk_seq *s) { return s ? s->len : 0; }

mlk_status mlk_seq_set_sampling(mlk_seq *s, const mlk_sampling *p) {
  if (!s)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_seq_set_sampling: the sequence is NULL");
  mlk_status st = mlk_sampling_check(s->m, p, "mlk_seq_set_sampling");
  if (st)
    return st;
  s->sampler = mlk_sampler_make(p);
  return MLK_OK;
}

MlkSampler *mlk_kv_row_sampler(mlk_model *m, int64_t row, int64_t *index) {
  MlkKv *kv = m->kv;
  mlk_seq *s = kv && kv->managed ? kv->rows[row] : NULL;
  *index = s ? row - s->row : 0;
  return s ? &s->sampler : NULL;
}

int mlk_kv_managed(const mlk_model *m) { return m->kv && m->kv->managed; }

mlk_status mlk_model_set_seqs(mlk_model *m, mlk_seq *const *seqs, int64_t n) {
  mlk_status st = no_kv(m, "mlk_model_set_seqs");
  if (st)
    return st;
  if (n > 0 && !seqs)
    return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_seqs: seqs is NULL");
  for (int64_t b = 0; b < n && b < m->batch_max; b++) {
    if (!seqs[b] || seqs[b]->m != m)
      return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_seqs: row %lld is %s", (long long)b,
                           seqs[b] ? "a sequence of another model" : "NULL");
    /* a sequence may take several rows (a prompt chunk: one position each), consecutive ones */
    for (int64_t j = 0; j + 1 < b; j++)
      if (seqs[j] == seqs[b] && seqs[b - 1] != seqs[b])
        return mlk_set_error(MLK_ERR_INVALID, "mlk_model_set_seqs: rows %lld and %lld are the same "
                             "sequence, with another between them (a sequence's rows must be "
                             "consecutive)", (long long)j, (long long)b);
  }
  if ((st = mlk_model_set_batch(m, n)))
    return st;
  MlkKv *kv = m->kv;
  for (int64_t b = 0; b < m->batch_max; b++) {
    if (kv->rows[b])
      kv->rows[b]->row = -1, kv->rows[b]->nrows = 0;
    kv->rows[b] = NULL;
  }
  for (int64_t b = 0; b < n; b++) {
    kv->rows[b] = seqs[b];
    if (seqs[b]->nrows++ == 0)
      seqs[b]->row = b;
  }
  kv->dirty = 1;
  return MLK_OK;
}

/* ---- runs ---- */

mlk_status mlk_kv_before_run(mlk_model *m, int kernel) {
  MlkKv *kv = m->kv;
  if (!kv)
    return MLK_OK;
  const MlkModelDesc *d = m->desc;
  if (!kv->managed) {
    for (int c = 0; c < d->ncaches; c++)
      if (m->rt[MLK_RT_PAGES(c)] < m->batch_max * m->rt[MLK_RT_PAGES_PER_SEQ(c)])
        return mlk_set_error(MLK_ERR_INVALID, "KV cache '%s' of model '%s' has %lld pages, fewer than "
                             "%lld rows x %lld pages: bind sequences to the rows (mlk_seq_create, "
                             "mlk_model_set_seqs)", d->caches[c].name, d->name,
                             (long long)m->rt[MLK_RT_PAGES(c)], (long long)m->batch_max,
                             (long long)m->rt[MLK_RT_PAGES_PER_SEQ(c)]);
    return MLK_OK;
  }
  for (int64_t b = 0; b < m->batch; b++)
    if (!kv->rows[b])
      return mlk_set_error(MLK_ERR_INVALID, "model '%s' runs %lld rows, but row %lld has no sequence "
                           "(mlk_model_set_seqs; a freed sequence leaves its row)", d->name,
                           (long long)m->batch, (long long)b);
  /* input positions of the kernel's cache ops must be reserved by their row's sequence */
  const MlkKernelDesc *k = &d->kernels[kernel];
  for (int o = k->first_op; o < k->first_op + k->nops; o++) {
    const MlkOpDesc *op = &d->ops[o];
    if (op->kind != MLK_OP_KV_APPEND && op->kind != MLK_OP_ATTENTION)
      continue;
    const int32_t *pos = m->shadow[op->in[2].tensor];
    for (int64_t b = 0; pos && b < mlk_op_rows(op, m->batch); b++) {
      /* rows of one sequence: each writes its own position, and reads the earlier ones */
      if (b > 0 && kv->rows[b] == kv->rows[b - 1] &&
          pos[op->in[2].offset + b] <= pos[op->in[2].offset + b - 1])
        return mlk_set_error(MLK_ERR_INVALID, "input '%s' rows %lld and %lld are %d and %d: rows of one "
                             "sequence must hold increasing positions (op '%s')",
                             d->tensors[op->in[2].tensor].name, (long long)b - 1, (long long)b,
                             pos[op->in[2].offset + b - 1], pos[op->in[2].offset + b], op->name);
      if (pos[op->in[2].offset + b] >= kv->rows[b]->len)
        return mlk_set_error(MLK_ERR_INVALID, "input '%s' row %lld is %d: op '%s' %s position %d of a "
                             "sequence of %lld tokens (mlk_seq_append reserves positions)",
                             d->tensors[op->in[2].tensor].name, (long long)b,
                             pos[op->in[2].offset + b], op->name,
                             op->kind == MLK_OP_KV_APPEND ? "writes" : "reads up to",
                             pos[op->in[2].offset + b], (long long)kv->rows[b]->len);
    }
  }
  if (!kv->dirty)
    return MLK_OK;
  for (int64_t b = 0; b < m->batch_max; b++) {
    const mlk_seq *s = kv->rows[b];
    for (int64_t j = 0; j < kv->pps; j++)
      kv->table[b * kv->pps + j] = s && j < s->npages ? s->pages[j] : -1;
  }
  return upload_tables(m);
}

mlk_status mlk_kv_check(const mlk_model *m) {
  const MlkKv *kv = m ? m->kv : NULL;
  if (!kv || !kv->managed)
    return MLK_OK;
  int32_t *count = MLK_CALLOC((size_t)kv->npages, sizeof *count, "page recount");
  if (!count)
    return MLK_ERR_NOMEM;
  mlk_status st = MLK_OK;
  for (const mlk_seq *s = kv->seqs; s && !st; s = s->next) {
    if (s->npages != (s->len + kv->page - 1) / kv->page)
      st = mlk_set_error(MLK_ERR_INVALID, "a sequence of %lld tokens holds %lld pages", (long long)s->len,
                         (long long)s->npages);
    for (int64_t i = 0; i < s->npages && !st; i++) {
      if (s->pages[i] < 0 || s->pages[i] >= kv->npages)
        st = mlk_set_error(MLK_ERR_INVALID, "a sequence holds page %d of %lld", s->pages[i],
                           (long long)kv->npages);
      else
        count[s->pages[i]]++;
    }
    for (int64_t b = s->row; b >= 0 && b < s->row + s->nrows && !st; b++)
      if (kv->rows[b] != s)
        st = mlk_set_error(MLK_ERR_INVALID, "a sequence thinks it is row %lld", (long long)b);
  }
  int64_t nzero = 0;
  for (int64_t p = 0; p < kv->npages && !st; p++) {
    if (count[p] != kv->refs[p])
      st = mlk_set_error(MLK_ERR_INVALID, "page %lld is held by %d sequences, its count says %d",
                         (long long)p, count[p], kv->refs[p]);
    nzero += count[p] == 0;
    count[p] = 0;
  }
  for (int64_t i = 0; i < kv->nfree && !st; i++) {
    int32_t p = kv->free[i];
    if (p < 0 || p >= kv->npages || kv->refs[p] != 0 || count[p]++)
      st = mlk_set_error(MLK_ERR_INVALID, "free page %d is held or listed twice", p);
  }
  if (!st && nzero != kv->nfree)
    st = mlk_set_error(MLK_ERR_INVALID, "%lld pages are held by no sequence, %lld are free",
                       (long long)nzero, (long long)kv->nfree);
  free(count);
  return st;
}
