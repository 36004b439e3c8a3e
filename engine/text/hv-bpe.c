/* hv-bpe.c — token table, merge table, heap-driven merge loop, byte↔char mapping, cache.
 * See hv-bpe.h. The tables are open-addressing hashes (load factor <= 1/2) so a lookup is
 * one hash of the key and, almost always, one compare. */
#include "hv-bpe.h"
#include "hv-error.h"
#include <string.h>

#define NO_KEY G_MAXUINT32

struct _HvBpe {
  HvBpeMode mode;
  GByteArray *arena;     /* every key, back to back */
  guint32 *key_off;      /* per id: offset in arena (NO_KEY: no such id) */
  guint32 *key_len;
  gint32 id_cap, id_end;
  /* token hash: slot holds id+1, 0 = empty */
  gint32 *slots;
  guint slot_cap, n_tokens;
  /* merge hash: key (left << 32 | right) + 1, 0 = empty */
  guint64 *mkeys;
  gint32 *mrank, *mnew;
  guint mcap, n_merges;
};

static guint64
hash_bytes (const char *p, gsize n)
{
  guint64 h = 0xcbf29ce484222325ull;   /* FNV-1a */
  for (gsize i = 0; i < n; i++) {
    h ^= (guint8) p[i];
    h *= 0x100000001b3ull;
  }
  return h ^ (h >> 29);
}

static guint64
hash_u64 (guint64 x)
{
  x ^= x >> 33;   /* murmur3 finalizer */
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

HvBpe *
hv_bpe_new (HvBpeMode mode)
{
  HvBpe *b = g_new0 (HvBpe, 1);
  b->mode = mode;
  b->arena = g_byte_array_new ();
  b->slot_cap = 1024;
  b->slots = g_new0 (gint32, b->slot_cap);
  return b;
}

void
hv_bpe_free (HvBpe *b)
{
  if (!b)
    return;
  g_byte_array_unref (b->arena);
  g_free (b->key_off);
  g_free (b->key_len);
  g_free (b->slots);
  g_free (b->mkeys);
  g_free (b->mrank);
  g_free (b->mnew);
  g_free (b);
}

HvBpeMode
hv_bpe_mode (const HvBpe *b)
{
  return b->mode;
}

guint
hv_bpe_n_tokens (const HvBpe *b)
{
  return b->n_tokens;
}

gint32
hv_bpe_id_end (const HvBpe *b)
{
  return b->id_end;
}

guint
hv_bpe_n_merges (const HvBpe *b)
{
  return b->n_merges;
}

const char *
hv_bpe_key (const HvBpe *b, gint32 id, gsize *len)
{
  if (id < 0 || id >= b->id_end || b->key_off[id] == NO_KEY)
    return NULL;
  *len = b->key_len[id];
  return (const char *) b->arena->data + b->key_off[id];
}

static gboolean
key_equals (const HvBpe *b, gint32 id, const char *key, gsize len)
{
  return b->key_len[id] == len && memcmp (b->arena->data + b->key_off[id], key, len) == 0;
}

gint32
hv_bpe_lookup (const HvBpe *b, const char *key, gsize len)
{
  guint mask = b->slot_cap - 1;
  for (guint i = (guint) hash_bytes (key, len) & mask;; i = (i + 1) & mask) {
    gint32 s = b->slots[i];
    if (s == 0)
      return -1;
    if (key_equals (b, s - 1, key, len))
      return s - 1;
  }
}

static void
slot_insert (gint32 *slots, guint cap, const HvBpe *b, gint32 id)
{
  gsize len = b->key_len[id];
  const char *key = (const char *) b->arena->data + b->key_off[id];
  guint mask = cap - 1;
  guint i = (guint) hash_bytes (key, len) & mask;
  while (slots[i] != 0)
    i = (i + 1) & mask;
  slots[i] = id + 1;
}

gboolean
hv_bpe_add_token (HvBpe *b, const char *key, gsize len, gint32 id, GError **error)
{
  if (id < 0 || id == G_MAXINT32) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "token id %d is out of range", id);
    return FALSE;
  }
  if (len >= G_MAXUINT32 || b->arena->len + len >= G_MAXUINT32) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "token table too large");
    return FALSE;
  }
  if (id < b->id_end && b->key_off[id] != NO_KEY) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "token id %d appears twice", id);
    return FALSE;
  }
  if (hv_bpe_lookup (b, key, len) >= 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "token %d repeats the text of token %d", id,
                 hv_bpe_lookup (b, key, len));
    return FALSE;
  }
  if (id >= b->id_cap) {
    gint32 cap = MAX (id + 1, MAX (256, b->id_cap * 2));
    b->key_off = g_renew (guint32, b->key_off, cap);
    b->key_len = g_renew (guint32, b->key_len, cap);
    for (gint32 i = b->id_cap; i < cap; i++)
      b->key_off[i] = NO_KEY;
    b->id_cap = cap;
  }
  b->key_off[id] = b->arena->len;
  b->key_len[id] = (guint32) len;
  g_byte_array_append (b->arena, (const guint8 *) key, (guint) len);
  b->id_end = MAX (b->id_end, id + 1);
  if (2 * (b->n_tokens + 1) > b->slot_cap) {
    guint cap = b->slot_cap * 2;
    gint32 *slots = g_new0 (gint32, cap);
    for (guint i = 0; i < b->slot_cap; i++)
      if (b->slots[i])
        slot_insert (slots, cap, b, b->slots[i] - 1);
    g_free (b->slots);
    b->slots = slots;
    b->slot_cap = cap;
  }
  slot_insert (b->slots, b->slot_cap, b, id);
  b->n_tokens++;
  return TRUE;
}

/* ---- merge table ---- */

static guint
merge_find (const HvBpe *b, guint64 k)
{
  guint mask = b->mcap - 1;
  guint i = (guint) hash_u64 (k) & mask;
  while (b->mkeys[i] != 0 && b->mkeys[i] != k)
    i = (i + 1) & mask;
  return i;
}

static void
merge_grow (HvBpe *b)
{
  guint old_cap = b->mcap;
  guint64 *ok = b->mkeys;
  gint32 *orank = b->mrank, *onew = b->mnew;
  b->mcap = old_cap ? old_cap * 2 : 1024;
  b->mkeys = g_new0 (guint64, b->mcap);
  b->mrank = g_new (gint32, b->mcap);
  b->mnew = g_new (gint32, b->mcap);
  for (guint i = 0; i < old_cap; i++)
    if (ok[i]) {
      guint j = merge_find (b, ok[i]);
      b->mkeys[j] = ok[i];
      b->mrank[j] = orank[i];
      b->mnew[j] = onew[i];
    }
  g_free (ok);
  g_free (orank);
  g_free (onew);
}

static guint64
pair_key (gint32 l, gint32 r)
{
  return (((guint64) (guint32) l << 32) | (guint32) r) + 1;
}

gboolean
hv_bpe_add_merge (HvBpe *b, const char *left, gsize llen, const char *right, gsize rlen,
                  gint32 rank, GError **error)
{
  g_return_val_if_fail (b->mode == HV_BPE_MERGE_RANKS, FALSE);
  gint32 l = hv_bpe_lookup (b, left, llen);
  gint32 r = hv_bpe_lookup (b, right, rlen);
  g_autofree char *both = g_malloc (llen + rlen + 1);
  memcpy (both, left, llen);
  memcpy (both + llen, right, rlen);
  gint32 m = hv_bpe_lookup (b, both, llen + rlen);
  if (l < 0 || r < 0 || m < 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "merge %d ('%.*s' + '%.*s') names a token missing from the vocabulary", rank,
                 (int) MIN (llen, 64), left, (int) MIN (rlen, 64), right);
    return FALSE;
  }
  if (2 * (b->n_merges + 1) > b->mcap)
    merge_grow (b);
  guint64 k = pair_key (l, r);
  guint i = merge_find (b, k);
  if (b->mkeys[i] == k)
    return TRUE;   /* first rank wins */
  b->mkeys[i] = k;
  b->mrank[i] = rank;
  b->mnew[i] = m;
  b->n_merges++;
  return TRUE;
}

/* The rank of merging l,r and the id it makes; FALSE if they do not merge. */
static gboolean
pair_rank (const HvBpe *b, gint32 l, gint32 r, gint32 *rank, gint32 *made)
{
  if (b->mode == HV_BPE_MERGE_RANKS) {
    if (!b->mcap)
      return FALSE;
    guint i = merge_find (b, pair_key (l, r));
    if (!b->mkeys[i])
      return FALSE;
    *rank = b->mrank[i];
    *made = b->mnew[i];
    return TRUE;
  }
  gsize ll = b->key_len[l], rl = b->key_len[r];
  char stack[256];
  char *buf = ll + rl <= sizeof stack ? stack : g_malloc (ll + rl);
  memcpy (buf, b->arena->data + b->key_off[l], ll);
  memcpy (buf + ll, b->arena->data + b->key_off[r], rl);
  gint32 id = hv_bpe_lookup (b, buf, ll + rl);
  if (buf != stack)
    g_free (buf);
  if (id < 0)
    return FALSE;
  *rank = *made = id;
  return TRUE;
}

/* ---- merge loop ---- */

typedef struct {
  gint32 rank, pos, made;
} Cand;

static gboolean
cand_less (const Cand *a, const Cand *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (Cand *h, gsize *n, Cand c)
{
  gsize i = (*n)++;
  while (i > 0) {
    gsize p = (i - 1) / 2;
    if (!cand_less (&c, &h[p]))
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static Cand
heap_pop (Cand *h, gsize *n)
{
  Cand top = h[0], last = h[--(*n)];
  gsize i = 0;
  for (;;) {
    gsize c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && cand_less (&h[c + 1], &h[c]))
      c++;
    if (!cand_less (&h[c], &last))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n)
    h[i] = last;
  return top;
}

gsize
hv_bpe_merge (const HvBpe *b, gint32 *ids, gsize n)
{
  if (n < 2)
    return n;
  /* Every merge pushes at most 2 candidates, and there are < n merges. */
  gsize hcap = 3 * n;
  gint32 *next = g_new (gint32, n);
  gint32 *prev = g_new (gint32, n);
  Cand *heap = g_new (Cand, hcap);
  gsize hn = 0;
  for (gsize i = 0; i < n; i++) {
    next[i] = i + 1 < n ? (gint32) (i + 1) : -1;
    prev[i] = (gint32) i - 1;
  }
  for (gsize i = 0; i + 1 < n; i++) {
    Cand c = { .pos = (gint32) i };
    if (pair_rank (b, ids[i], ids[i + 1], &c.rank, &c.made))
      heap_push (heap, &hn, c);
  }
  while (hn) {
    Cand c = heap_pop (heap, &hn);
    gint32 i = c.pos, j;
    gint32 rank, made;
    if (ids[i] < 0 || (j = next[i]) < 0)
      continue;   /* i was absorbed, or is last now */
    if (!pair_rank (b, ids[i], ids[j], &rank, &made) || rank != c.rank || made != c.made)
      continue;   /* stale: a neighbour changed since this candidate was pushed */
    ids[i] = made;
    ids[j] = -1;
    next[i] = next[j];
    if (next[j] >= 0)
      prev[next[j]] = i;
    Cand nc;
    if (prev[i] >= 0 && pair_rank (b, ids[prev[i]], ids[i], &nc.rank, &nc.made)) {
      nc.pos = prev[i];
      heap_push (heap, &hn, nc);
    }
    if (next[i] >= 0 && pair_rank (b, ids[i], ids[next[i]], &nc.rank, &nc.made)) {
      nc.pos = i;
      heap_push (heap, &hn, nc);
    }
  }
  gsize out = 0;
  for (gsize i = 0; i < n; i++)
    if (ids[i] >= 0)
      ids[out++] = ids[i];
  g_free (next);
  g_free (prev);
  g_free (heap);
  return out;
}

/* ---- GPT-2 bytes_to_unicode ---- */

static gboolean
byte_is_printable (int b)
{
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* Printable bytes stand for themselves; the 68 others get U+0100, U+0101, ... in byte order.
 * `order` lists the printable bytes first, then the others: the vocab order of CLIP. */
static struct {
  gunichar chr[256];
  guint8 order[256];
  gint16 from_chr[324];
} bytemap;

static void
bytemap_init (void)
{
  static gsize done = 0;
  if (!g_once_init_enter (&done))
    return;
  int k = 0, o = 0;
  for (int i = 0; i < 324; i++)
    bytemap.from_chr[i] = -1;
  for (int b = 0; b < 256; b++) {
    bytemap.chr[b] = byte_is_printable (b) ? (gunichar) b : (gunichar) (256 + k++);
    bytemap.from_chr[bytemap.chr[b]] = (gint16) b;
    if (byte_is_printable (b))
      bytemap.order[o++] = (guint8) b;
  }
  for (int b = 0; b < 256; b++)
    if (!byte_is_printable (b))
      bytemap.order[o++] = (guint8) b;
  g_once_init_leave (&done, 1);
}

gunichar
hv_bpe_byte_char (guint8 b)
{
  bytemap_init ();
  return bytemap.chr[b];
}

int
hv_bpe_char_byte (gunichar c)
{
  bytemap_init ();
  return c < G_N_ELEMENTS (bytemap.from_chr) ? bytemap.from_chr[c] : -1;
}

guint8
hv_bpe_byte_at (int i)
{
  g_return_val_if_fail (i >= 0 && i < 256, 0);
  bytemap_init ();
  return bytemap.order[i];
}

gboolean
hv_bpe_unmap_key (const char *key, gssize len, GByteArray *out)
{
  const char *end;
  gsize n = len < 0 ? strlen (key) : (gsize) len;
  if (!g_utf8_validate_len (key, n, &end))
    return FALSE;
  for (const char *p = key; p < key + n; p = g_utf8_next_char (p)) {
    int v = hv_bpe_char_byte (g_utf8_get_char (p));
    if (v < 0)
      return FALSE;
    guint8 byte = (guint8) v;
    g_byte_array_append (out, &byte, 1);
  }
  return TRUE;
}

/* ---- cache ---- */

typedef struct {
  gsize len;
  const char *p;
} CacheKey;

struct _HvBpeCache {
  GMutex lock;
  GHashTable *map;   /* CacheKey* (data follows it) → gint32[1 + n], [0] = n */
  guint max_entries;
};

static guint
cache_key_hash (gconstpointer k)
{
  const CacheKey *c = k;
  return (guint) hash_bytes (c->p, c->len);
}

static gboolean
cache_key_equal (gconstpointer a, gconstpointer b)
{
  const CacheKey *x = a, *y = b;
  return x->len == y->len && memcmp (x->p, y->p, x->len) == 0;
}

HvBpeCache *
hv_bpe_cache_new (guint max_entries)
{
  HvBpeCache *c = g_new0 (HvBpeCache, 1);
  g_mutex_init (&c->lock);
  c->map = g_hash_table_new_full (cache_key_hash, cache_key_equal, g_free, g_free);
  c->max_entries = max_entries;
  return c;
}

void
hv_bpe_cache_free (HvBpeCache *c)
{
  if (!c)
    return;
  g_hash_table_unref (c->map);
  g_mutex_clear (&c->lock);
  g_free (c);
}

gboolean
hv_bpe_cache_get (HvBpeCache *c, const char *piece, gsize len, GArray *out)
{
  CacheKey k = { len, piece };
  g_mutex_lock (&c->lock);
  const gint32 *v = g_hash_table_lookup (c->map, &k);
  if (v)
    g_array_append_vals (out, v + 1, (guint) v[0]);
  g_mutex_unlock (&c->lock);
  return v != NULL;
}

void
hv_bpe_cache_put (HvBpeCache *c, const char *piece, gsize len, const gint32 *ids, gsize n)
{
  if (c->max_entries == 0 || len > 256)
    return;   /* long pieces are rare and would only bloat it */
  CacheKey *k = g_malloc (sizeof (CacheKey) + len);
  char *data = (char *) (k + 1);
  memcpy (data, piece, len);
  k->len = len;
  k->p = data;
  gint32 *v = g_new (gint32, n + 1);
  v[0] = (gint32) n;
  memcpy (v + 1, ids, n * sizeof (gint32));
  g_mutex_lock (&c->lock);
  if (g_hash_table_size (c->map) >= c->max_entries)
    g_hash_table_remove_all (c->map);
  g_hash_table_replace (c->map, k, v);
  g_mutex_unlock (&c->lock);
}

/* ---- special tokens ---- */

struct _HvBpeSpecials {
  GHashTable *by_name;   /* char* → id (GINT_TO_POINTER) */
  GHashTable *by_id;     /* id → char* (names owned by by_name) */
  guint8 first[32];      /* bitset of the first bytes of the names */
  gsize lens[64];        /* distinct name lengths, longest first */
  guint n_lens;
  gint32 max_id;
};

HvBpeSpecials *
hv_bpe_specials_new (void)
{
  HvBpeSpecials *sp = g_new0 (HvBpeSpecials, 1);
  sp->by_name = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sp->by_id = g_hash_table_new (g_direct_hash, g_direct_equal);
  sp->max_id = -1;
  return sp;
}

void
hv_bpe_specials_free (HvBpeSpecials *sp)
{
  if (!sp)
    return;
  g_hash_table_unref (sp->by_id);
  g_hash_table_unref (sp->by_name);
  g_free (sp);
}

gboolean
hv_bpe_specials_add (HvBpeSpecials *sp, const char *name, gint32 id)
{
  gsize len = strlen (name);
  if (len == 0 || len >= 256 || id < 0 || g_hash_table_contains (sp->by_name, name) ||
      g_hash_table_contains (sp->by_id, GINT_TO_POINTER (id)))
    return FALSE;
  guint k = 0;
  while (k < sp->n_lens && sp->lens[k] > len)
    k++;
  if (k == sp->n_lens || sp->lens[k] != len) {
    if (sp->n_lens == G_N_ELEMENTS (sp->lens))
      return FALSE;   /* 64 distinct lengths: far beyond any real tokenizer */
    memmove (sp->lens + k + 1, sp->lens + k, (sp->n_lens - k) * sizeof sp->lens[0]);
    sp->lens[k] = len;
    sp->n_lens++;
  }
  char *owned = g_strdup (name);
  g_hash_table_insert (sp->by_name, owned, GINT_TO_POINTER (id));
  g_hash_table_insert (sp->by_id, GINT_TO_POINTER (id), owned);
  guint8 f = (guint8) name[0];
  sp->first[f >> 3] |= (guint8) (1u << (f & 7));
  sp->max_id = MAX (sp->max_id, id);
  return TRUE;
}

gint32
hv_bpe_specials_id (const HvBpeSpecials *sp, const char *name)
{
  gpointer v;
  if (!g_hash_table_lookup_extended (sp->by_name, name, NULL, &v))
    return -1;
  return GPOINTER_TO_INT (v);
}

const char *
hv_bpe_specials_name (const HvBpeSpecials *sp, gint32 id)
{
  return g_hash_table_lookup (sp->by_id, GINT_TO_POINTER (id));
}

gint32
hv_bpe_specials_max_id (const HvBpeSpecials *sp)
{
  return sp->max_id;
}

gboolean
hv_bpe_specials_find (const HvBpeSpecials *sp, const char *text, gsize len, gsize *at,
                      gsize *match_len, gint32 *id)
{
  if (sp->n_lens == 0)
    return FALSE;
  char buf[256];
  for (gsize i = 0; i < len; i++) {
    guint8 f = (guint8) text[i];
    if (!(sp->first[f >> 3] & (1u << (f & 7))))
      continue;
    for (guint k = 0; k < sp->n_lens; k++) {
      gsize l = sp->lens[k];
      if (l > len - i || l >= sizeof buf)
        continue;
      memcpy (buf, text + i, l);   /* the table is keyed by NUL-terminated names */
      buf[l] = '\0';
      gpointer v;
      if (g_hash_table_lookup_extended (sp->by_name, buf, NULL, &v)) {
        *at = i;
        *match_len = l;
        *id = GPOINTER_TO_INT (v);
        return TRUE;
      }
    }
  }
  return FALSE;
}
