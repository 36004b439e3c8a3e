/* hv-pickle.c — see hv-pickle.h. Opcode values from CPython's Lib/pickletools.py docs. */
#include "hv-pickle.h"
#include "../hv-error.h"
#include <string.h>

#define MAX_STACK   (1u << 20)
#define MAX_MARKS   4096u          /* nesting depth of MARK-delimited tuples/lists/dicts */
#define MAX_MEMO    (1u << 24)     /* largest memo index accepted */
#define MAX_NAME    256u           /* GLOBAL module / name length */

struct _HvPickle {
  char *label;
  GPtrArray *arena;     /* every value, freed together (values may share and even cycle) */
  GPtrArray *stack;
  GArray *marks;        /* stack heights at each MARK */
  GHashTable *memo;     /* index -> HvPv* */
  HvPv *result;
};

static void
pv_free (gpointer p)
{
  HvPv *v = p;
  g_free (v->s);
  if (v->items)
    g_ptr_array_unref (v->items);
  g_free (v);
}

static HvPv *
pv_new (HvPickle *p, HvPvKind kind)
{
  HvPv *v = g_new0 (HvPv, 1);
  v->kind = kind;
  if (kind >= PV_TUPLE && kind != PV_GLOBAL)
    v->items = g_ptr_array_new ();
  g_ptr_array_add (p->arena, v);
  return v;
}

void
hv_pickle_free (HvPickle *p)
{
  if (!p)
    return;
  g_ptr_array_unref (p->arena);
  g_ptr_array_unref (p->stack);
  g_array_unref (p->marks);
  g_hash_table_unref (p->memo);
  g_free (p->label);
  g_free (p);
}

HvPv *
hv_pickle_result (HvPickle *p)
{
  return p->result;
}

HvPv *
hv_pv_dict_get (HvPv *d, const char *key)
{
  if (!d || d->kind != PV_DICT)
    return NULL;
  for (guint i = 0; i + 1 < d->items->len; i += 2) {
    HvPv *k = d->items->pdata[i];
    if (k->kind == PV_STR && strcmp (k->s, key) == 0)
      return d->items->pdata[i + 1];
  }
  return NULL;
}

/* ---- the allow-list ---------------------------------------------------------------------- */

static const struct {
  const char *name;
  HvDType dtype;
} torch_dtypes[] = {
  { "float32", HV_DTYPE_F32 }, { "float", HV_DTYPE_F32 },
  { "float16", HV_DTYPE_F16 }, { "half", HV_DTYPE_F16 },
  { "bfloat16", HV_DTYPE_BF16 },
  { "float8_e4m3fn", HV_DTYPE_F8_E4M3 }, { "float8_e5m2", HV_DTYPE_F8_E5M2 },
  { "int64", HV_DTYPE_I64 }, { "long", HV_DTYPE_I64 },
  { "int32", HV_DTYPE_I32 }, { "int", HV_DTYPE_I32 },
  { "uint8", HV_DTYPE_U8 }, { "bool", HV_DTYPE_BOOL },
};

static gboolean
lookup_global (const char *module, const char *name, HvPv *v)
{
  static const struct {
    const char *module, *name;
    HvPickleGlobal g;
  } fixed[] = {
    { "collections", "OrderedDict", HV_G_ORDERED_DICT },
    { "torch._utils", "_rebuild_tensor", HV_G_REBUILD_TENSOR },
    { "torch._utils", "_rebuild_tensor_v2", HV_G_REBUILD_TENSOR_V2 },
    { "torch._utils", "_rebuild_tensor_v3", HV_G_REBUILD_TENSOR_V3 },
    { "torch._utils", "_rebuild_parameter", HV_G_REBUILD_PARAMETER },
    { "torch._utils", "_rebuild_parameter_with_state", HV_G_REBUILD_PARAMETER_STATE },
    { "torch", "UntypedStorage", HV_G_UNTYPED_STORAGE },
    { "torch.storage", "UntypedStorage", HV_G_UNTYPED_STORAGE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (fixed); i++)
    if (strcmp (module, fixed[i].module) == 0 && strcmp (name, fixed[i].name) == 0) {
      v->glob = fixed[i].g;
      return TRUE;
    }
  if (strcmp (module, "torch") != 0)
    return FALSE;
  if (g_str_has_suffix (name, "Storage") && hv_dtype_from_torch_storage (name, &v->dtype)) {
    v->glob = HV_G_TYPED_STORAGE;
    return TRUE;
  }
  for (guint i = 0; i < G_N_ELEMENTS (torch_dtypes); i++)
    if (strcmp (name, torch_dtypes[i].name) == 0) {
      v->glob = HV_G_DTYPE;
      v->dtype = torch_dtypes[i].dtype;
      return TRUE;
    }
  return FALSE;
}

/* ---- the machine ------------------------------------------------------------------------- */

typedef struct {
  HvPickle *p;
  const guint8 *d;
  gsize len, pos, op_pos;
  GError **error;
} Vm;

static gboolean G_GNUC_PRINTF (3, 4)
vm_fail (Vm *vm, int code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (vm->error, HV_ERROR, code, "%s: pickle byte %zu: %s", vm->p->label, vm->op_pos, msg);
  return FALSE;
}

#define CORRUPT(...) vm_fail (vm, HV_ERROR_CORRUPT, __VA_ARGS__)

static gboolean
take (Vm *vm, gsize n, const guint8 **out)
{
  if (vm->len - vm->pos < n)
    return CORRUPT ("truncated (opcode needs %zu more bytes)", n);
  *out = vm->d + vm->pos;
  vm->pos += n;
  return TRUE;
}

static guint64
le (const guint8 *b, guint n)
{
  guint64 v = 0;
  for (guint i = 0; i < n; i++)
    v |= (guint64) b[i] << (8 * i);
  return v;
}

static gboolean
push (Vm *vm, HvPv *v)
{
  if (vm->p->stack->len >= MAX_STACK)
    return CORRUPT ("stack deeper than %u entries", MAX_STACK);
  g_ptr_array_add (vm->p->stack, v);
  return TRUE;
}

/* The top of the stack (not removed); nothing below the last MARK counts. */
static gboolean
top (Vm *vm, HvPv **out)
{
  GPtrArray *st = vm->p->stack;
  guint floor = vm->p->marks->len ? g_array_index (vm->p->marks, guint, vm->p->marks->len - 1) : 0;
  if (st->len <= floor)
    return CORRUPT ("stack underflow");
  *out = st->pdata[st->len - 1];
  return TRUE;
}

/* top() and removes it: the caller owns *out. */
static gboolean
pop (Vm *vm, HvPv **out)
{
  if (!top (vm, out))
    return FALSE;
  g_ptr_array_steal_index (vm->p->stack, vm->p->stack->len - 1);
  return TRUE;
}

/* Moves everything above the last MARK into `into` (if not NULL) and drops the mark. */
static gboolean
pop_mark (Vm *vm, GPtrArray *into)
{
  HvPickle *p = vm->p;
  if (!p->marks->len)
    return CORRUPT ("no MARK to pop to");
  guint m = g_array_index (p->marks, guint, p->marks->len - 1);
  g_array_set_size (p->marks, p->marks->len - 1);
  for (guint i = m; i < p->stack->len; i++)
    if (into)
      g_ptr_array_add (into, p->stack->pdata[i]);
  g_ptr_array_set_size (p->stack, m);
  return TRUE;
}

static gboolean
make_str (Vm *vm, HvPvKind kind, gsize n)
{
  const guint8 *b;
  if (!take (vm, n, &b))
    return FALSE;
  if (kind == PV_STR && (memchr (b, 0, n) || !g_utf8_validate ((const char *) b, (gssize) n, NULL)))
    return CORRUPT ("string is not valid UTF-8 text");
  HvPv *v = pv_new (vm->p, kind);
  v->s = g_strndup ((const char *) b, n);
  if (kind == PV_BYTES) {
    g_free (v->s);
    v->s = g_malloc (n + 1);
    memcpy (v->s, b, n);
    v->s[n] = 0;
  }
  v->len = n;
  return push (vm, v);
}

static gboolean
make_global (Vm *vm, const char *module, const char *name)
{
  HvPv *v = pv_new (vm->p, PV_GLOBAL);
  v->s = g_strdup_printf ("%s.%s", module, name);
  if (!lookup_global (module, name, v))
    return vm_fail (vm, HV_ERROR_UNSUPPORTED,
                    "refers to '%s', which a plain state dict never needs; refusing to load it "
                    "(nothing was executed)", v->s);
  return push (vm, v);
}

/* GLOBAL's argument: "module\nname\n" */
static gboolean
read_line (Vm *vm, char **out)
{
  const guint8 *start = vm->d + vm->pos;
  gsize left = vm->len - vm->pos;
  const guint8 *nl = memchr (start, '\n', MIN (left, MAX_NAME + 1));
  if (!nl)
    return CORRUPT ("GLOBAL name missing or longer than %u bytes", MAX_NAME);
  gsize n = (gsize) (nl - start);
  if (memchr (start, 0, n) || !g_utf8_validate ((const char *) start, (gssize) n, NULL))
    return CORRUPT ("GLOBAL name is not text");
  *out = g_strndup ((const char *) start, n);
  vm->pos += n + 1;
  return TRUE;
}

static gboolean
memo_put (Vm *vm, guint64 idx)
{
  HvPv *v;
  if (idx >= MAX_MEMO)
    return CORRUPT ("memo index %" G_GUINT64_FORMAT " is too large", idx);
  if (!top (vm, &v))
    return FALSE;
  g_hash_table_insert (vm->p->memo, GUINT_TO_POINTER ((guint) idx), v);
  return TRUE;
}

static gboolean
memo_get (Vm *vm, guint64 idx)
{
  HvPv *v = idx < MAX_MEMO ? g_hash_table_lookup (vm->p->memo, GUINT_TO_POINTER ((guint) idx)) : NULL;
  if (!v)
    return CORRUPT ("memo index %" G_GUINT64_FORMAT " was never stored", idx);
  return push (vm, v);
}

static gboolean
op_reduce (Vm *vm)
{
  HvPv *args, *fn;
  if (!pop (vm, &args) || !pop (vm, &fn))
    return FALSE;
  if (fn->kind != PV_GLOBAL)
    return CORRUPT ("REDUCE of something that is not a function");
  if (args->kind != PV_TUPLE)
    return CORRUPT ("REDUCE arguments are not a tuple");
  switch (fn->glob) {
  case HV_G_ORDERED_DICT:
    if (args->items->len != 0)
      return vm_fail (vm, HV_ERROR_UNSUPPORTED, "OrderedDict called with arguments");
    return push (vm, pv_new (vm->p, PV_DICT));
  case HV_G_REBUILD_TENSOR:
  case HV_G_REBUILD_TENSOR_V2:
  case HV_G_REBUILD_TENSOR_V3:
  case HV_G_REBUILD_PARAMETER:
  case HV_G_REBUILD_PARAMETER_STATE: {
    HvPv *call = pv_new (vm->p, PV_CALL);
    call->glob = fn->glob;
    g_ptr_array_extend (call->items, args->items, NULL, NULL);
    return push (vm, call);
  }
  default:
    return vm_fail (vm, HV_ERROR_UNSUPPORTED, "'%s' is not callable in a state dict", fn->s);
  }
}

static gboolean
set_items (Vm *vm, HvPv *dict, HvPv **kv, guint n)
{
  if (dict->kind != PV_DICT)
    return CORRUPT ("SETITEM on something that is not a dict");
  if (n % 2)
    return CORRUPT ("SETITEMS with an odd number of entries");
  for (guint i = 0; i < n; i += 2)
    if (kv[i]->kind != PV_STR && kv[i]->kind != PV_INT)
      return CORRUPT ("dict key is neither a string nor an integer");
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (dict->items, kv[i]);
  return TRUE;
}

static gboolean
step (Vm *vm, gboolean *stop)
{
  HvPickle *p = vm->p;
  const guint8 *b = NULL;
  HvPv *v, *w;
  vm->op_pos = vm->pos;
  if (!take (vm, 1, &b))
    return FALSE;
  guint8 op = *b;
  switch (op) {
  case 0x80: /* PROTO */
    if (!take (vm, 1, &b))
      return FALSE;
    if (*b > 5)
      return vm_fail (vm, HV_ERROR_UNSUPPORTED, "pickle protocol %u is newer than 5", *b);
    return TRUE;
  case 0x95: /* FRAME: a length hint only */
    return take (vm, 8, &b);
  case '.': /* STOP */
    if (!pop (vm, &p->result))
      return FALSE;
    *stop = TRUE;
    return TRUE;
  case '(': /* MARK */
    if (p->marks->len >= MAX_MARKS)
      return CORRUPT ("nested deeper than %u levels", MAX_MARKS);
    g_array_append_val (p->marks, p->stack->len);
    return TRUE;
  case '0': /* POP */
    return pop (vm, &v);
  case '1': /* POP_MARK */
    return pop_mark (vm, NULL);
  case '2': /* DUP */
    return top (vm, &v) && push (vm, v);
  case 'N':
    return push (vm, pv_new (p, PV_NONE));
  case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
    v = pv_new (p, PV_BOOL);
    v->i = op == 0x88;
    return push (vm, v);
  case 'K': case 'M': case 'J': { /* BININT1, BININT2, BININT */
    guint n = op == 'K' ? 1 : op == 'M' ? 2 : 4;
    if (!take (vm, n, &b))
      return FALSE;
    v = pv_new (p, PV_INT);
    v->i = op == 'J' ? (gint64) (gint32) (guint32) le (b, 4) : (gint64) le (b, n);
    return push (vm, v);
  }
  case 0x8a: { /* LONG1 */
    if (!take (vm, 1, &b))
      return FALSE;
    guint n = *b;
    if (n > 8)
      return vm_fail (vm, HV_ERROR_UNSUPPORTED, "integer of %u bytes is too large", n);
    if (!take (vm, n, &b))
      return FALSE;
    guint64 u = le (b, n);
    if (n && n < 8 && (b[n - 1] & 0x80))
      u |= ~(guint64) 0 << (8 * n);   /* sign-extend */
    v = pv_new (p, PV_INT);
    v->i = (gint64) u;
    return push (vm, v);
  }
  case 'G': { /* BINFLOAT: big-endian double */
    if (!take (vm, 8, &b))
      return FALSE;
    guint64 u = 0;
    for (int i = 0; i < 8; i++)
      u = u << 8 | b[i];
    v = pv_new (p, PV_FLOAT);
    memcpy (&v->f, &u, 8);
    return push (vm, v);
  }
  case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
    /* BINUNICODE(4), SHORT_BINUNICODE(1), BINUNICODE8(8), BINSTRING(4), SHORT_BINSTRING(1),
     * BINBYTES(4), SHORT_BINBYTES(1), BINBYTES8(8) */
    guint n = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
    if (!take (vm, n, &b))
      return FALSE;
    guint64 l = le (b, n);
    if (l > vm->len - vm->pos)
      return CORRUPT ("string of %" G_GUINT64_FORMAT " bytes runs past the end", l);
    gboolean bytes = op == 'B' || op == 'C' || op == 0x8e;
    return make_str (vm, bytes ? PV_BYTES : PV_STR, (gsize) l);
  }
  case '}': return push (vm, pv_new (p, PV_DICT));
  case ']': return push (vm, pv_new (p, PV_LIST));
  case ')': return push (vm, pv_new (p, PV_TUPLE));
  case 't': case 'l': case 'd': { /* TUPLE, LIST, DICT from the marked items */
    v = pv_new (p, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : PV_DICT);
    if (op == 'd') {
      g_autoptr(GPtrArray) kv = g_ptr_array_new ();
      if (!pop_mark (vm, kv) || !set_items (vm, v, (HvPv **) kv->pdata, kv->len))
        return FALSE;
    } else if (!pop_mark (vm, v->items)) {
      return FALSE;
    }
    return push (vm, v);
  }
  case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
    guint n = op - 0x84;
    HvPv *e[3];
    for (guint i = n; i-- > 0;)
      if (!pop (vm, &e[i]))
        return FALSE;
    v = pv_new (p, PV_TUPLE);
    for (guint i = 0; i < n; i++)
      g_ptr_array_add (v->items, e[i]);
    return push (vm, v);
  }
  case 's': { /* SETITEM */
    HvPv *k, *d;
    if (!pop (vm, &w) || !pop (vm, &k) || !top (vm, &d))
      return FALSE;
    HvPv *kv[2] = { k, w };
    return set_items (vm, d, kv, 2);
  }
  case 'u': { /* SETITEMS */
    g_autoptr(GPtrArray) kv = g_ptr_array_new ();
    HvPv *d;
    if (!pop_mark (vm, kv) || !top (vm, &d))
      return FALSE;
    return set_items (vm, d, (HvPv **) kv->pdata, kv->len);
  }
  case 'a': case 'e': { /* APPEND, APPENDS */
    g_autoptr(GPtrArray) items = g_ptr_array_new ();
    HvPv *l;
    if (op == 'a') {
      if (!pop (vm, &w))
        return FALSE;
      g_ptr_array_add (items, w);
    } else if (!pop_mark (vm, items)) {
      return FALSE;
    }
    if (!top (vm, &l))
      return FALSE;
    if (l->kind != PV_LIST)
      return CORRUPT ("APPEND to something that is not a list");
    g_ptr_array_extend (l->items, items, NULL, NULL);
    return TRUE;
  }
  case 'q': case 'r': /* BINPUT, LONG_BINPUT */
    if (!take (vm, op == 'q' ? 1 : 4, &b))
      return FALSE;
    return memo_put (vm, le (b, op == 'q' ? 1 : 4));
  case 0x94: /* MEMOIZE */
    return memo_put (vm, g_hash_table_size (p->memo));
  case 'h': case 'j': /* BINGET, LONG_BINGET */
    if (!take (vm, op == 'h' ? 1 : 4, &b))
      return FALSE;
    return memo_get (vm, le (b, op == 'h' ? 1 : 4));
  case 'c': { /* GLOBAL */
    g_autofree char *module = NULL, *name = NULL;
    if (!read_line (vm, &module) || !read_line (vm, &name))
      return FALSE;
    return make_global (vm, module, name);
  }
  case 0x93: { /* STACK_GLOBAL */
    HvPv *module, *name;
    if (!pop (vm, &name) || !pop (vm, &module))
      return FALSE;
    if (module->kind != PV_STR || name->kind != PV_STR)
      return CORRUPT ("STACK_GLOBAL needs two strings");
    return make_global (vm, module->s, name->s);
  }
  case 'R': /* REDUCE */
    return op_reduce (vm);
  case 'b': { /* BUILD: the state (e.g. a state dict's _metadata) is not needed */
    HvPv *obj;
    if (!pop (vm, &w) || !top (vm, &obj))
      return FALSE;
    if (obj->kind != PV_DICT && obj->kind != PV_CALL)
      return CORRUPT ("BUILD on an unexpected object");
    return TRUE;
  }
  case 'Q': { /* BINPERSID */
    if (!pop (vm, &w))
      return FALSE;
    if (w->kind != PV_TUPLE)
      return CORRUPT ("persistent id is not a tuple");
    v = pv_new (p, PV_PERSID);
    g_ptr_array_extend (v->items, w->items, NULL, NULL);
    return push (vm, v);
  }
  default:
    return vm_fail (vm, HV_ERROR_UNSUPPORTED, "opcode 0x%02x ('%c') is not used by state dicts",
                    op, g_ascii_isprint (op) ? op : '?');
  }
}

HvPickle *
hv_pickle_run (const char *label, const guint8 *data, gsize len, GError **error)
{
  g_autoptr(HvPickle) p = g_new0 (HvPickle, 1);
  p->label = g_strdup (label);
  p->arena = g_ptr_array_new_with_free_func (pv_free);
  p->stack = g_ptr_array_new ();
  p->marks = g_array_new (FALSE, FALSE, sizeof (guint));
  p->memo = g_hash_table_new (g_direct_hash, g_direct_equal);
  Vm vm = { p, data, len, 0, 0, error };
  gboolean stop = FALSE;
  while (!stop) {
    if (vm.pos >= len) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: pickle ends without STOP (truncated?)", label);
      return NULL;
    }
    if (!step (&vm, &stop))
      return NULL;
  }
  return g_steal_pointer (&p);
}
