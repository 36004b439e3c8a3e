/* test-loaders.c — checkpoint loaders on generated files: valid safetensors, shard sets and
 * torch.save archives (incl. zip64 and float8), and every kind of broken or hostile file we
 * can make (truncated, oversized, overlapping, wrongly typed, pickles naming os.system or
 * builtins.eval, memo/nesting bombs, compressed entries): each must give an HV_ERROR naming the
 * file, never crash or hang. Also name rules vs the full 13B manifest, validation reports,
 * fp8 maps and layout detection. HV_FIXTURES names the fixtures folder. */
#include "hv-error.h"
#include "hv-tensor.h"
#include "loaders/hv-store.h"
#include "loaders/hv-layout.h"
#include "loaders/hv-names.h"
#include "loaders/hv-fp8.h"
#include "../fuzz/hv-test-build.h"
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

static char *tmpdir;

static char *
write_tmp (const char *name, GBytes *content)
{
  char *path = g_build_filename (tmpdir, name, NULL);
  gsize n;
  const char *d = g_bytes_get_data (content, &n);
  g_autofree char *dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);
  g_assert_true (g_file_set_contents (path, d ? d : "", (gssize) n, NULL));
  return path;
}

static GBytes *
text_bytes (const char *s)
{
  return g_bytes_new (s, strlen (s));
}

/* Opens the file (and the same bytes in memory) and expects an HV_ERROR naming the file. */
static void
expect_fail (const char *name, GBytes *content, int code, const char *needle)
{
  g_autofree char *path = write_tmp (name, content);
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) s = hv_store_open (path, &err);
  g_assert_null (s);
  g_assert_nonnull (err);
  g_test_message ("%s -> %s", name, err->message);
  g_assert_true (err->domain == HV_ERROR);
  g_assert_nonnull (strstr (err->message, path));
  if (needle)
    g_assert_nonnull (strstr (err->message, needle));
  if (code >= 0)
    g_assert_cmpint (err->code, ==, code);
  /* the in-memory entry points agree */
  gsize n;
  const guint8 *d = g_bytes_get_data (content, &n);
  g_autoptr(HvStore) m = hv_store_new ();
  g_autoptr(GError) err2 = NULL;
  gboolean zip = n >= 2 && d[0] == 'P' && d[1] == 'K';
  gboolean ok = zip ? hv_store_add_pt_bytes (m, "mem", content, &err2)
                    : hv_store_add_safetensors_bytes (m, "mem", content, &err2);
  if (!(n >= 2 && d[0] == 0x80)) {    /* legacy pickles are refused by hv_store_open only */
    g_assert_false (ok);
    g_assert_true (g_str_has_prefix (err2->message, "mem"));
  }
}

/* ---- safetensors -------------------------------------------------------------------------- */

static const float four[4] = { 1.f, -2.f, 3.5f, 0.25f };

static void
test_st_valid (void)
{
  const char *h2 = "{\"__metadata__\":{\"format\":\"pt\"},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                   "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[16,16]},"
                   "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]}}";
  float data[5] = { 1.f, -2.f, 3.5f, 0.25f, 7.f };
  g_autoptr(GBytes) b = tb_safetensors (h2, -1, data, sizeof data);
  g_autofree char *path = write_tmp ("valid.safetensors", b);
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) s = hv_store_open (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (hv_store_n_tensors (s), ==, 3);
  const HvTensor *a = hv_store_get (s, "a");
  g_assert_cmpint (a->ndim, ==, 2);
  g_assert_cmpfloat (((const float *) a->data)[2], ==, 3.5f);
  g_assert_cmpint (hv_store_get (s, "e")->shape[0], ==, 0);
  g_assert_cmpint (hv_store_get (s, "s")->ndim, ==, 0);
  g_assert_cmpfloat (*(const float *) hv_store_get (s, "s")->data, ==, 7.f);
  g_assert_cmpstr (g_hash_table_lookup (hv_store_metadata (s), "format"), ==, "pt");
  g_assert_cmpstr (hv_store_path (s), ==, path);
  g_assert_cmpuint (hv_store_n_params (s), ==, 5);
  /* the tensors outlive the store's own reference to the mapping */
  g_autoptr(HvTensor) v = hv_store_take (s, "a");
  g_clear_pointer (&s, hv_store_free);
  g_assert_cmpfloat (((const float *) v->data)[3], ==, 0.25f);
}

static void
test_st_corrupt (void)
{
  static const struct {
    const char *name, *header;
    gint64 hlen;         /* -1: real */
    gsize data;          /* bytes of data after the header */
    int code;
    const char *needle;
  } cases[] = {
    { "hlen-huge", "{}", G_GINT64_CONSTANT (1) << 40, 0, HV_ERROR_CORRUPT, "header length" },
    { "hlen-past-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 100, 16, HV_ERROR_CORRUPT, "does not fit" },
    { "hlen-zero", "{}", 0, 0, HV_ERROR_CORRUPT, "header length" },
    { "truncated-data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 8, HV_ERROR_CORRUPT, "outside" },
    { "offsets-outside", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1000]}}", -1, 16, HV_ERROR_CORRUPT, "outside" },
    { "offsets-reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", -1, 16, HV_ERROR_CORRUPT, NULL },
    { "offsets-huge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[18446744073709551600,18446744073709551615]}}", -1, 16, HV_ERROR_CORRUPT, NULL },
    { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", -1, 24, HV_ERROR_CORRUPT, "overlap" },
    { "wrong-bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", -1, 16, HV_ERROR_CORRUPT, "needs 16" },
    { "bad-json", "{\"a\":{\"dtype\":\"F32\",", -1, 0, HV_ERROR_CORRUPT, "JSON" },
    { "json-array", "[1,2,3]", -1, 0, HV_ERROR_CORRUPT, "not a JSON object" },
    { "bad-dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_UNSUPPORTED, "Q4" },
    { "dtype-number", "{\"a\":{\"dtype\":5,\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "dtype" },
    { "dtype-object", "{\"a\":{\"dtype\":{},\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "dtype" },
    { "shape-negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "shape" },
    { "shape-overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "overflow" },
    { "shape-float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5,2],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "shape" },
    { "shape-string", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, NULL },
    { "six-dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1],\"data_offsets\":[0,4]}}", -1, 4, HV_ERROR_UNSUPPORTED, "dims" },
    { "entry-not-object", "{\"a\":5}", -1, 0, HV_ERROR_CORRUPT, "'a'" },
    { "no-offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", -1, 16, HV_ERROR_CORRUPT, "data_offsets" },
    { "offsets-three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8,16]}}", -1, 16, HV_ERROR_CORRUPT, "2 entries" },
    { "metadata-number", "{\"__metadata__\":5}", -1, 0, HV_ERROR_CORRUPT, "__metadata__" },
    { "bad-utf8", "{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 16, HV_ERROR_CORRUPT, "UTF-8" },
  };
  float data[8] = { 0 };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr(GBytes) b = tb_safetensors (cases[i].header, cases[i].hlen, data, cases[i].data);
    g_autofree char *name = g_strdup_printf ("%s.safetensors", cases[i].name);
    expect_fail (name, b, cases[i].code, cases[i].needle);
  }
  /* files too short to hold a header; a NUL inside the header; nesting far too deep */
  g_autoptr(GBytes) empty = g_bytes_new (NULL, 0);
  expect_fail ("empty.safetensors", empty, HV_ERROR_CORRUPT, NULL);
  g_autoptr(GBytes) shortb = g_bytes_new ("\x05\0\0", 3);
  expect_fail ("short.safetensors", shortb, HV_ERROR_CORRUPT, NULL);
  static const char nul_header[] = "{\"a\":\0}";
  g_autoptr(GBytes) nul = tb_safetensors ("", 7, nul_header, 7);
  expect_fail ("nul.safetensors", nul, HV_ERROR_CORRUPT, NULL);
  GString *deep = g_string_new ("{\"a\":");
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < 200000; i++)
    g_string_append_c (deep, ']');
  g_string_append_c (deep, '}');
  g_autoptr(GBytes) db = tb_safetensors (deep->str, -1, NULL, 0);
  g_string_free (deep, TRUE);
  expect_fail ("deep.safetensors", db, HV_ERROR_CORRUPT, "nested");
  /* a folder and a missing file */
  g_autoptr(GError) err = NULL;
  g_assert_null (hv_store_open (tmpdir, &err));
  g_assert_nonnull (strstr (err->message, tmpdir));
  g_clear_error (&err);
  g_autofree char *missing = g_build_filename (tmpdir, "nope.safetensors", NULL);
  g_assert_null (hv_store_open (missing, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_NOT_FOUND);
}

/* ---- shard index ------------------------------------------------------------------------- */

static void
write_shards (const char *dir)
{
  g_autoptr(GBytes) s1 = tb_safetensors ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, four, 8);
  g_autoptr(GBytes) s2 = tb_safetensors ("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                          "\"c\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}", -1, four, 12);
  g_autofree char *n1 = g_build_filename (dir, "m-00001-of-00002.safetensors", NULL);
  g_autofree char *n2 = g_build_filename (dir, "m-00002-of-00002.safetensors", NULL);
  g_free (write_tmp (n1, s1));
  g_free (write_tmp (n2, s2));
}

static void
test_index (void)
{
  write_shards ("shards");
  const char *good = "{\"metadata\":{\"total_size\":20},\"weight_map\":{\"a\":\"m-00001-of-00002.safetensors\","
                     "\"b\":\"m-00002-of-00002.safetensors\",\"c\":\"m-00002-of-00002.safetensors\"}}";
  g_autoptr(GBytes) gb = text_bytes (good);
  g_autofree char *idx = write_tmp ("shards/m.safetensors.index.json", gb);
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) s = hv_store_open (idx, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (hv_store_n_tensors (s), ==, 3);
  /* these shards' headers leave the data unaligned: the loader hands out aligned copies */
  g_assert_cmpuint ((guintptr) hv_store_get (s, "b")->data % 4, ==, 0);
  g_assert_cmpfloat (((const float *) hv_store_get (s, "b")->data)[1], ==, -2.f);
  g_assert_cmpfloat (*(const float *) hv_store_get (s, "c")->data, ==, 3.5f);
  g_assert_cmpstr (hv_store_path (s), ==, idx);

  static const struct { const char *name, *json, *needle; int code; } bad[] = {
    { "missing-shard", "{\"weight_map\":{\"a\":\"m-00001-of-00002.safetensors\",\"x\":\"gone.safetensors\"}}",
      "gone.safetensors", HV_ERROR_NOT_FOUND },
    { "escape", "{\"weight_map\":{\"a\":\"../shards/m-00001-of-00002.safetensors\"}}", "plain file name", HV_ERROR_CORRUPT },
    { "absent-tensor", "{\"weight_map\":{\"a\":\"m-00001-of-00002.safetensors\",\"zz\":\"m-00001-of-00002.safetensors\"}}",
      "'zz'", HV_ERROR_CORRUPT },
    { "no-map", "{\"metadata\":{}}", "weight_map", HV_ERROR_CORRUPT },
    { "map-number", "{\"weight_map\":{\"a\":7}}", "'a'", HV_ERROR_CORRUPT },
    { "empty-map", "{\"weight_map\":{}}", "no tensors", HV_ERROR_CORRUPT },
    { "bad-json", "{\"weight_map\":", "JSON", HV_ERROR_CORRUPT },
    /* the same tensor in two shards */
    { "duplicate", "{\"weight_map\":{\"a\":\"m-00001-of-00002.safetensors\",\"a2\":\"dup.safetensors\"}}",
      "another file", HV_ERROR_CORRUPT },
  };
  g_autoptr(GBytes) dup = tb_safetensors ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, four, 8);
  g_free (write_tmp ("shards/dup.safetensors", dup));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GBytes) b = text_bytes (bad[i].json);
    g_autofree char *name = g_strdup_printf ("shards/%s.index.json", bad[i].name);
    g_autofree char *p = write_tmp (name, b);
    g_autoptr(GError) e = NULL;
    g_autoptr(HvStore) st = hv_store_open (p, &e);
    g_assert_null (st);
    g_test_message ("%s -> %s", bad[i].name, e->message);
    g_assert_nonnull (strstr (e->message, bad[i].needle));
    g_assert_error (e, HV_ERROR, bad[i].code);
  }
}

/* ---- torch archives ------------------------------------------------------------------------ */

static const gint64 shape23[2] = { 2, 3 }, stride23[2] = { 3, 1 };

/* {"w": bf16[2,3] from storage "0"} */
static GByteArray *
pickle_simple (void)
{
  GByteArray *b = g_byte_array_new ();
  pk_byte (b, 0x80); pk_byte (b, 2);
  pk_byte (b, '}'); pk_byte (b, 'q'); pk_byte (b, 0);
  pk_byte (b, '(');
  pk_str (b, "w");
  pk_tensor_v2 (b, "BFloat16Storage", "0", 6, 0, 2, shape23, stride23);
  pk_byte (b, 'u');
  pk_byte (b, '.');
  return b;
}

static GBytes *
finish (GByteArray *b)
{
  return g_byte_array_free_to_bytes (b);
}

static HvStore *
load_pt (GBytes *zip, GError **error)
{
  HvStore *s = hv_store_new ();
  if (!hv_store_add_pt_bytes (s, "mem.pt", zip, error)) {
    hv_store_free (s);
    return NULL;
  }
  return s;
}

static void
test_pt_valid (void)
{
  /* {"module": OrderedDict{w: bf16 [2,3], b: f32 [2] at element 1, p: Parameter(f8 [3,4] via
   *  _rebuild_tensor_v3 + UntypedStorage), s: 0-d f32}, "ema": {...}, "step": 7} */
  GByteArray *b = g_byte_array_new ();
  pk_byte (b, 0x80); pk_byte (b, 4);
  pk_byte (b, 0x95); pk_le (b, 0, 8);                       /* FRAME */
  pk_byte (b, '}'); pk_byte (b, 0x94);                      /* MEMOIZE */
  pk_byte (b, '(');
  pk_byte (b, 0x8c); pk_byte (b, 3); g_byte_array_append (b, (const guint8 *) "ema", 3);
  pk_byte (b, '}');
  pk_str (b, "x");
  pk_tensor_v2 (b, "FloatStorage", "0", 3, 0, 1, (gint64[]) { 3 }, (gint64[]) { 1 });
  pk_byte (b, 's');
  pk_str (b, "module");
  pk_global (b, "collections", "OrderedDict"); pk_byte (b, ')'); pk_byte (b, 'R');
  pk_byte (b, '(');
  pk_str (b, "w");
  pk_tensor_v2 (b, "BFloat16Storage", "0", 6, 0, 2, shape23, stride23);
  pk_str (b, "b");
  pk_tensor_v2 (b, "FloatStorage", "0", 3, 1, 1, (gint64[]) { 2 }, (gint64[]) { 1 });
  pk_str (b, "p");
  pk_global (b, "torch._utils", "_rebuild_parameter");
  pk_byte (b, '(');
  /* v3 via STACK_GLOBAL */
  pk_str (b, "torch._utils"); pk_str (b, "_rebuild_tensor_v3"); pk_byte (b, 0x93);
  pk_byte (b, '(');
  pk_byte (b, '('); pk_str (b, "storage"); pk_global (b, "torch", "UntypedStorage"); pk_str (b, "0"); pk_str (b, "cpu");
  pk_int (b, 12); pk_byte (b, 't'); pk_byte (b, 'Q');
  pk_int (b, 0);
  pk_int_tuple (b, 2, (gint64[]) { 3, 4 });
  pk_int_tuple (b, 2, (gint64[]) { 4, 1 });
  pk_byte (b, 0x89);
  pk_global (b, "collections", "OrderedDict"); pk_byte (b, ')'); pk_byte (b, 'R');
  pk_global (b, "torch", "float8_e4m3fn");
  pk_byte (b, 't'); pk_byte (b, 'R');
  pk_byte (b, 0x88);
  pk_global (b, "collections", "OrderedDict"); pk_byte (b, ')'); pk_byte (b, 'R');
  pk_byte (b, 't'); pk_byte (b, 'R');
  pk_str (b, "s");
  pk_tensor_v2 (b, "FloatStorage", "0", 3, 2, 0, NULL, NULL);
  pk_str (b, "extra");
  pk_byte (b, 'N');
  pk_byte (b, 'u');
  /* state dict metadata, as torch writes with BUILD */
  pk_byte (b, '}'); pk_str (b, "_metadata"); pk_byte (b, '}'); pk_byte (b, 's'); pk_byte (b, 'b');
  pk_str (b, "step"); pk_int (b, 7);
  pk_byte (b, 'u');                                         /* root: ema, module, step */
  pk_byte (b, '.');
  g_autoptr(GBytes) pkl = finish (b);
  for (int z64 = 0; z64 < 2; z64++) {
    g_autoptr(GBytes) zip = tb_torch_zip (pkl, 1, 12, 0, z64);
    g_autoptr(GError) err = NULL;
    g_autoptr(HvStore) s = load_pt (zip, &err);
    g_assert_no_error (err);
    g_assert_cmpuint (hv_store_n_tensors (s), ==, 4);      /* module's tensors, not ema's */
    g_assert_null (hv_store_get (s, "x"));
    const HvTensor *w = hv_store_get (s, "w"), *bb = hv_store_get (s, "b"), *p = hv_store_get (s, "p");
    const HvTensor *sc = hv_store_get (s, "s");
    g_assert_cmpint (w->dtype, ==, HV_DTYPE_BF16);
    g_assert_cmpint (w->shape[1], ==, 3);
    g_assert_cmpint (((const guint8 *) w->data)[11], ==, 11);
    g_assert_cmpint (bb->dtype, ==, HV_DTYPE_F32);
    g_assert_cmpint (((const guint8 *) bb->data)[0], ==, 4);   /* element 1 of the storage */
    g_assert_cmpint (p->dtype, ==, HV_DTYPE_F8_E4M3);
    g_assert_cmpint (p->shape[0], ==, 3);
    g_assert_cmpint (((const guint8 *) p->data)[5], ==, 5);
    g_assert_cmpint (sc->ndim, ==, 0);
    g_assert_cmpint (((const guint8 *) sc->data)[0], ==, 8);
  }
  /* a bare state dict written to a file, through hv_store_open */
  g_autoptr(GByteArray) sb = pickle_simple ();
  g_autoptr(GBytes) sp = g_bytes_new (sb->data, sb->len);
  g_autoptr(GBytes) zip = tb_torch_zip (sp, 1, 12, 0, FALSE);
  g_autofree char *path = write_tmp ("bare.pt", zip);
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) s = hv_store_open (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (hv_store_n_tensors (s), ==, 1);
}

/* builds a torch zip around a pickle made by `fn` and expects failure */
static void
pt_case (const char *name, GByteArray *pkl, guint n_storages, gsize storage_len, int code, const char *needle)
{
  g_autoptr(GBytes) p = g_byte_array_free_to_bytes (pkl);
  g_autoptr(GBytes) zip = tb_torch_zip (p, n_storages, storage_len, 0, FALSE);
  g_autofree char *fname = g_strdup_printf ("%s.pt", name);
  expect_fail (fname, zip, code, needle);
}

static GByteArray *
pk_start (void)
{
  GByteArray *b = g_byte_array_new ();
  pk_byte (b, 0x80); pk_byte (b, 2);
  return b;
}

/* a state dict whose single tensor uses these rebuild arguments */
static GByteArray *
pk_one (const char *storage, const char *key, gint64 numel, gint64 offset, int nd, const gint64 *shape,
        const gint64 *stride)
{
  GByteArray *b = pk_start ();
  pk_byte (b, '}'); pk_byte (b, '(');
  pk_str (b, "w");
  pk_tensor_v2 (b, storage, key, numel, offset, nd, shape, stride);
  pk_byte (b, 'u'); pk_byte (b, '.');
  return b;
}

static void
test_pt_hostile (void)
{
  /* the classic exploits: a global that runs code, reduced with an argument */
  static const char *const globals[][2] = {
    { "os", "system" }, { "posix", "system" }, { "nt", "system" }, { "builtins", "eval" }, { "builtins", "exec" },
    { "__builtin__", "eval" }, { "subprocess", "Popen" }, { "torch", "load" }, { "torch.serialization", "load" },
    { "numpy.core.multiarray", "_reconstruct" }, { "torch._utils", "_rebuild_device_tensor_from_numpy" },
    { "torch", "QInt8Storage" }, { "collections", "defaultdict" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (globals); i++) {
    GByteArray *b = pk_start ();
    pk_global (b, globals[i][0], globals[i][1]);
    pk_str (b, "touch /tmp/hv-pwned"); pk_byte (b, 0x85); pk_byte (b, 'R'); pk_byte (b, '.');
    g_autofree char *name = g_strdup_printf ("hostile-%s.%s", globals[i][0], globals[i][1]);
    g_autofree char *full = g_strdup_printf ("'%s.%s'", globals[i][0], globals[i][1]);
    pt_case (name, b, 0, 0, HV_ERROR_UNSUPPORTED, full);
  }
  /* the same through STACK_GLOBAL, inside an otherwise valid state dict */
  GByteArray *b = pk_start ();
  pk_byte (b, '}'); pk_byte (b, '(');
  pk_str (b, "w");
  pk_str (b, "builtins"); pk_str (b, "eval"); pk_byte (b, 0x93);
  pk_str (b, "__import__('os').system('true')"); pk_byte (b, 0x85); pk_byte (b, 'R');
  pk_byte (b, 'u'); pk_byte (b, '.');
  pt_case ("hostile-stack-global", b, 0, 0, HV_ERROR_UNSUPPORTED, "'builtins.eval'");
  g_assert_false (g_file_test ("/tmp/hv-pwned", G_FILE_TEST_EXISTS));
}

static void
test_pt_corrupt_pickle (void)
{
  GByteArray *b;
  /* memo index far too large */
  b = pk_start (); pk_byte (b, '}'); pk_byte (b, 'r'); pk_le (b, 0xFFFFFFFFu, 4); pk_byte (b, '.');
  pt_case ("memo-huge", b, 0, 0, HV_ERROR_CORRUPT, "memo index");
  /* memo index never stored */
  b = pk_start (); pk_byte (b, 'h'); pk_byte (b, 5); pk_byte (b, '.');
  pt_case ("memo-unset", b, 0, 0, HV_ERROR_CORRUPT, "never stored");
  /* nesting: 100000 MARKs */
  b = pk_start ();
  for (int i = 0; i < 100000; i++)
    pk_byte (b, '(');
  pk_byte (b, '.');
  pt_case ("deep-marks", b, 0, 0, HV_ERROR_CORRUPT, "nested");
  /* stack underflow */
  b = pk_start (); pk_byte (b, 'N'); pk_byte (b, 0x86); pk_byte (b, '.');
  pt_case ("underflow", b, 0, 0, HV_ERROR_CORRUPT, "underflow");
  b = pk_start (); pk_byte (b, '.');
  pt_case ("stop-empty", b, 0, 0, HV_ERROR_CORRUPT, "underflow");
  /* no STOP; cut inside a string */
  b = pk_start (); pk_byte (b, '}');
  pt_case ("no-stop", b, 0, 0, HV_ERROR_CORRUPT, "STOP");
  b = pk_start (); pk_byte (b, 'X'); pk_le (b, 100, 4); g_byte_array_append (b, (const guint8 *) "abc", 3);
  pt_case ("cut-string", b, 0, 0, HV_ERROR_CORRUPT, "runs past");
  b = pk_start (); pk_byte (b, 'X'); pk_le (b, 0xFFFFFFFFu, 4);
  pt_case ("string-huge", b, 0, 0, HV_ERROR_CORRUPT, "runs past");
  b = pk_start (); pk_byte (b, 'J'); pk_byte (b, 1);
  pt_case ("cut-int", b, 0, 0, HV_ERROR_CORRUPT, "truncated");
  /* opcodes a state dict never uses */
  static const guint8 ops[] = { 'i', 'o', 0x81, 0x92, 'P', 'V', 'I', 'L', 'F', 0x8b, 0xff };
  for (guint i = 0; i < G_N_ELEMENTS (ops); i++) {
    b = pk_start (); pk_byte (b, ops[i]); pk_byte (b, '.');
    g_autofree char *n = g_strdup_printf ("opcode-%02x", ops[i]);
    pt_case (n, b, 0, 0, HV_ERROR_UNSUPPORTED, "opcode");
  }
  b = g_byte_array_new (); pk_byte (b, 0x80); pk_byte (b, 9); pk_byte (b, '.');
  pt_case ("protocol-9", b, 0, 0, HV_ERROR_UNSUPPORTED, "protocol");
  b = pk_start (); pk_byte (b, 0x8a); pk_byte (b, 200); pk_byte (b, '.');
  pt_case ("long-huge", b, 0, 0, HV_ERROR_UNSUPPORTED, "too large");
  b = pk_start (); pk_byte (b, 'X'); pk_le (b, 2, 4); pk_byte (b, 0xff); pk_byte (b, 0xfe); pk_byte (b, '.');
  pt_case ("string-not-utf8", b, 0, 0, HV_ERROR_CORRUPT, "UTF-8");
  b = pk_start (); pk_byte (b, 'c'); for (int i = 0; i < 1000; i++) pk_byte (b, 'a');
  pt_case ("global-long", b, 0, 0, HV_ERROR_CORRUPT, "GLOBAL");
  /* REDUCE of things that are not allowed functions */
  b = pk_start (); pk_str (b, "x"); pk_byte (b, ')'); pk_byte (b, 'R'); pk_byte (b, '.');
  pt_case ("reduce-string", b, 0, 0, HV_ERROR_CORRUPT, "REDUCE");
  b = pk_start (); pk_global (b, "torch", "BFloat16Storage"); pk_byte (b, ')'); pk_byte (b, 'R'); pk_byte (b, '.');
  pt_case ("reduce-storage", b, 0, 0, HV_ERROR_UNSUPPORTED, "not callable");
  b = pk_start (); pk_global (b, "collections", "OrderedDict"); pk_str (b, "x"); pk_byte (b, 0x85); pk_byte (b, 'R'); pk_byte (b, '.');
  pt_case ("ordereddict-args", b, 0, 0, HV_ERROR_UNSUPPORTED, "OrderedDict");
  /* container misuse */
  b = pk_start (); pk_byte (b, ']'); pk_str (b, "k"); pk_byte (b, 'N'); pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("setitem-list", b, 0, 0, HV_ERROR_CORRUPT, "not a dict");
  b = pk_start (); pk_byte (b, '}'); pk_byte (b, 'N'); pk_byte (b, 'a'); pk_byte (b, '.');
  pt_case ("append-dict", b, 0, 0, HV_ERROR_CORRUPT, "not a list");
  b = pk_start (); pk_byte (b, '}'); pk_byte (b, ']'); pk_byte (b, 'N'); pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("key-list", b, 0, 0, HV_ERROR_CORRUPT, "key");
  b = pk_start (); pk_byte (b, ']'); pk_byte (b, '}'); pk_byte (b, 'b'); pk_byte (b, '.');
  pt_case ("build-list", b, 0, 0, HV_ERROR_CORRUPT, "BUILD");
  b = pk_start (); pk_str (b, "x"); pk_byte (b, 'Q'); pk_byte (b, '.');
  pt_case ("persid-string", b, 0, 0, HV_ERROR_CORRUPT, "persistent id");
  /* no tensors at all; a tensor under an integer key */
  b = pk_start (); pk_byte (b, '}'); pk_str (b, "a"); pk_int (b, 1); pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("no-tensors", b, 0, 0, HV_ERROR_NOT_FOUND, "no state dict");
  b = pk_start (); pk_byte (b, '}'); pk_int (b, 3);
  pk_tensor_v2 (b, "FloatStorage", "0", 1, 0, 0, NULL, NULL); pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("int-key", b, 1, 4, HV_ERROR_CORRUPT, "non-string");
}

static void
test_pt_corrupt_tensor (void)
{
  pt_case ("storage-missing", pk_one ("BFloat16Storage", "7", 6, 0, 2, shape23, stride23), 1, 12,
           HV_ERROR_CORRUPT, "archive/data/7");
  pt_case ("storage-short", pk_one ("BFloat16Storage", "0", 6, 0, 2, shape23, stride23), 1, 4,
           HV_ERROR_CORRUPT, "truncated");
  pt_case ("non-contiguous", pk_one ("BFloat16Storage", "0", 6, 0, 2, shape23, (gint64[]) { 1, 2 }), 1, 12,
           HV_ERROR_UNSUPPORTED, "contiguous");
  pt_case ("offset-past", pk_one ("BFloat16Storage", "0", 6, 5, 2, shape23, stride23), 1, 12,
           HV_ERROR_CORRUPT, "runs past");
  pt_case ("offset-negative", pk_one ("BFloat16Storage", "0", 6, -1, 2, shape23, stride23), 1, 12,
           HV_ERROR_CORRUPT, "offset");
  pt_case ("shape-negative", pk_one ("BFloat16Storage", "0", 6, 0, 2, (gint64[]) { -2, 3 }, stride23), 1, 12,
           HV_ERROR_CORRUPT, "shape");
  pt_case ("numel-huge", pk_one ("BFloat16Storage", "0", G_MAXINT64, 0, 2, shape23, stride23), 1, 12,
           HV_ERROR_CORRUPT, NULL);
  pt_case ("shape-overflow", pk_one ("FloatStorage", "0", 3, 0, 3, (gint64[]) { G_MAXINT64 / 2, 4, 4 },
                                     (gint64[]) { 16, 4, 1 }), 1, 12, HV_ERROR_CORRUPT, NULL);
  pt_case ("six-dims", pk_one ("FloatStorage", "0", 1, 0, 6, (gint64[]) { 1, 1, 1, 1, 1, 1 },
                               (gint64[]) { 1, 1, 1, 1, 1, 1 }), 1, 4, HV_ERROR_UNSUPPORTED, "dims");
  /* v2 with an untyped storage has no dtype */
  pt_case ("untyped-v2", pk_one ("UntypedStorage", "0", 12, 0, 2, shape23, stride23), 1, 12,
           HV_ERROR_CORRUPT, "dtype");
  /* too few arguments to the rebuild function */
  GByteArray *b = pk_start ();
  pk_byte (b, '}'); pk_str (b, "w");
  pk_global (b, "torch._utils", "_rebuild_tensor_v2"); pk_byte (b, ')'); pk_byte (b, 'R');
  pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("rebuild-no-args", b, 0, 0, HV_ERROR_CORRUPT, "arguments");
  /* a persistent id of the wrong form */
  b = pk_start ();
  pk_byte (b, '}'); pk_str (b, "w");
  pk_global (b, "torch._utils", "_rebuild_tensor");
  pk_byte (b, '('); pk_byte (b, '('); pk_str (b, "storage"); pk_byte (b, 't'); pk_byte (b, 'Q');
  pk_int (b, 0); pk_byte (b, ')'); pk_byte (b, ')'); pk_byte (b, 't'); pk_byte (b, 'R');
  pk_byte (b, 's'); pk_byte (b, '.');
  pt_case ("persid-short", b, 0, 0, HV_ERROR_CORRUPT, "storage reference");
}

/* patches a little-endian field of a built zip */
static GBytes *
patched (GBytes *zip, gsize at_from_end, guint64 value, guint n)
{
  gsize len;
  const guint8 *d = g_bytes_get_data (zip, &len);
  guint8 *c = g_malloc (len);
  memcpy (c, d, len);
  for (guint i = 0; i < n; i++)
    c[len - at_from_end + i] = (guint8) (value >> (8 * i));
  return g_bytes_new_take (c, len);
}

static void
test_pt_corrupt_zip (void)
{
  g_autoptr(GByteArray) sb = pickle_simple ();
  g_autoptr(GBytes) pkl = g_bytes_new (sb->data, sb->len);
  g_autoptr(GBytes) good = tb_torch_zip (pkl, 1, 12, 0, FALSE);
  gsize len;
  const guint8 *d = g_bytes_get_data (good, &len);
  g_autoptr(GBytes) half = g_bytes_new (d, len / 2);
  expect_fail ("truncated.pt", half, HV_ERROR_CORRUPT, "end-of-central-directory");
  g_autoptr(GBytes) cut = g_bytes_new (d, len - 1);
  expect_fail ("cut-eocd.pt", cut, HV_ERROR_CORRUPT, NULL);
  static const char junk_text[] = "PK\x03\x04 this is not a zip archive at all, just text......";
  g_autoptr(GBytes) junk = g_bytes_new (junk_text, sizeof junk_text - 1);
  expect_fail ("not-zip.pt", junk, HV_ERROR_CORRUPT, NULL);
  /* EOCD fields (offsets from the end of a comment-less archive): entries 12, cd size 10, cd offset 6 */
  g_autoptr(GBytes) cdoff = patched (good, 6, 0x7FFFFFF0u, 4);
  expect_fail ("cd-outside.pt", cdoff, HV_ERROR_CORRUPT, "central directory");
  g_autoptr(GBytes) many = patched (good, 12, 0xFFFE, 2);
  expect_fail ("entries-many.pt", many, HV_ERROR_CORRUPT, "entries");
  g_autoptr(GBytes) disk = patched (good, 18, 3, 2);
  expect_fail ("multi-volume.pt", disk, HV_ERROR_UNSUPPORTED, "multi-volume");
  g_autoptr(GBytes) z64bad = patched (good, 10, 0xFFFFFFFFu, 4);
  expect_fail ("zip64-no-locator.pt", z64bad, HV_ERROR_CORRUPT, "zip64");
  /* a compressed and an encrypted data.pkl */
  g_autoptr(GBytes) comp = tb_torch_zip (pkl, 1, 12, 8, FALSE);
  expect_fail ("compressed.pt", comp, HV_ERROR_UNSUPPORTED, "compressed");
  gsize plen;
  const guint8 *pd = g_bytes_get_data (pkl, &plen);
  TbEntry enc[] = { { "archive/data.pkl", pd, plen, 0, 1 } };
  g_autoptr(GBytes) encb = tb_zip (enc, 1, FALSE);
  expect_fail ("encrypted.pt", encb, HV_ERROR_UNSUPPORTED, "encrypted");
  /* archives without data.pkl, with two, big-endian, a local header pointing nowhere, a
   * duplicate entry */
  TbEntry none[] = { { "archive/other", pd, plen, 0, 0 } };
  g_autoptr(GBytes) noneb = tb_zip (none, 1, FALSE);
  expect_fail ("no-pickle.pt", noneb, HV_ERROR_CORRUPT, "data.pkl");
  TbEntry two[] = { { "a/data.pkl", pd, plen, 0, 0 }, { "b/data.pkl", pd, plen, 0, 0 } };
  g_autoptr(GBytes) twob = tb_zip (two, 2, FALSE);
  expect_fail ("two-pickles.pt", twob, HV_ERROR_CORRUPT, "more than one");
  TbEntry big[] = { { "archive/data.pkl", pd, plen, 0, 0 }, { "archive/byteorder", (const guint8 *) "big", 3, 0, 0 } };
  g_autoptr(GBytes) bigb = tb_zip (big, 2, FALSE);
  expect_fail ("big-endian.pt", bigb, HV_ERROR_UNSUPPORTED, "big-endian");
  TbEntry dup[] = { { "archive/data.pkl", pd, plen, 0, 0 }, { "archive/data.pkl", pd, plen, 0, 0 } };
  g_autoptr(GBytes) dupb = tb_zip (dup, 2, FALSE);
  expect_fail ("duplicate-entry.pt", dupb, HV_ERROR_CORRUPT, "twice");
  /* central entry 0's local header offset (42 bytes into the directory) pointed past the end */
  guint32 cd_off = (guint32) d[len - 6] | (guint32) d[len - 5] << 8 | (guint32) d[len - 4] << 16 | (guint32) d[len - 3] << 24;
  g_autoptr(GBytes) lho = patched (good, len - (cd_off + 42), 0x7FFFFFF0u, 4);
  expect_fail ("local-outside.pt", lho, HV_ERROR_CORRUPT, "local header");
  /* legacy (pre-zip) torch file: a bare pickle */
  g_autoptr(GBytes) legacy = g_bytes_new ("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
  expect_fail ("legacy.pt", legacy, HV_ERROR_UNSUPPORTED, "legacy");
}

/* memo fan-out and cycles: must finish quickly, not explode */
static void
test_pt_bombs (void)
{
  /* d0 = {}; d(i) = {k: d(i-1) for 200 keys}, 6 levels: 200^6 paths, each dict seen once */
  GByteArray *b = pk_start ();
  pk_byte (b, '}'); pk_byte (b, 'q'); pk_byte (b, 0);
  for (int lvl = 1; lvl <= 6; lvl++) {
    pk_byte (b, '}'); pk_byte (b, '(');
    for (int k = 0; k < 200; k++) {
      char key[16];
      g_snprintf (key, sizeof key, "k%d", k);
      pk_str (b, key);
      pk_byte (b, 'h'); pk_byte (b, (guint8) (lvl - 1));
    }
    pk_byte (b, 'u'); pk_byte (b, 'q'); pk_byte (b, (guint8) lvl);
  }
  pk_byte (b, '.');
  gint64 t0 = g_get_monotonic_time ();
  pt_case ("fanout", b, 0, 0, HV_ERROR_NOT_FOUND, "no state dict");
  /* a dict holding itself, a list appended to itself */
  b = pk_start ();
  pk_byte (b, '}'); pk_byte (b, 'q'); pk_byte (b, 0);
  pk_str (b, "self"); pk_byte (b, 'h'); pk_byte (b, 0); pk_byte (b, 's');
  pk_str (b, "list"); pk_byte (b, ']'); pk_byte (b, 'q'); pk_byte (b, 1); pk_byte (b, 'h'); pk_byte (b, 1);
  pk_byte (b, 'a'); pk_byte (b, 's');
  pk_byte (b, '.');
  pt_case ("cycle", b, 0, 0, HV_ERROR_NOT_FOUND, "no state dict");
  /* many DUPs: the stack bound */
  b = pk_start (); pk_byte (b, 'N');
  for (int i = 0; i < (1 << 20) + 10; i++)
    pk_byte (b, '2');
  pk_byte (b, '.');
  pt_case ("stack-bomb", b, 0, 0, HV_ERROR_CORRUPT, "stack");
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 10 * G_USEC_PER_SEC);
}

/* ---- fixtures' real files ------------------------------------------------------------------- */

static char *
fixture (const char *rel)
{
  const char *dir = g_getenv ("HV_FIXTURES");
  return dir ? g_build_filename (dir, rel, NULL) : NULL;
}

static void
test_pt_fixtures (void)
{
  static const struct { const char *file; guint n; } files[] = {
    { "dit/dit_weights.pt", 120 }, { "dit/dit_weights_fp8.pt", 120 }, { "dit/dit_weights_fp8_map.pt", 26 },
    { "vae/vae_weights.pt", 244 },
  };
  if (!g_getenv ("HV_FIXTURES")) {
    g_test_skip ("HV_FIXTURES not set");
    return;
  }
  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    g_autofree char *p = fixture (files[i].file);
    g_autoptr(GError) err = NULL;
    g_autoptr(HvStore) s = hv_store_open (p, &err);
    g_assert_no_error (err);
    g_assert_cmpuint (hv_store_n_tensors (s), ==, files[i].n);
  }
}

/* ---- names, manifests, validation ----------------------------------------------------------- */

static void
test_names_full_manifest (void)
{
  g_autofree char *path = fixture ("manifests/dit_full.json");
  if (!path) {
    g_test_skip ("HV_FIXTURES not set");
    return;
  }
  g_autoptr(JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, path, NULL));
  JsonArray *keys = json_object_get_array_member (json_node_get_object (json_parser_get_root (p)), "keys");
  g_assert_cmpuint (json_array_get_length (keys), ==, 856);
  g_autoptr(HvNameMap) m = hv_dit_name_map_new (20, 40, 2);
  g_assert_cmpuint (hv_name_map_size (m), ==, 856);
  guint n_parts = 0;
  for (guint i = 0; i < 856; i++) {
    JsonObject *k = json_array_get_object_element (keys, i);
    const HvNameRule *r = hv_name_map_by_official (m, json_object_get_string_member (k, "official"));
    g_assert_nonnull (r);
    JsonArray *parts = json_object_get_array_member (k, "diffusers");
    g_assert_cmpuint (r->n_parts, ==, json_array_get_length (parts));
    gint64 row = 0;
    for (guint j = 0; j < r->n_parts; j++) {
      JsonObject *pj = json_array_get_object_element (parts, j);
      g_assert_cmpstr (r->parts[j], ==, json_object_get_string_member (pj, "key"));
      g_assert_cmpstr (hv_name_op_str (r->op), ==, json_object_get_string_member (pj, "op"));
      guint part = 99;
      g_assert_true (hv_name_map_by_part (m, r->parts[j], &part) == r && part == j);
      if (r->op == HV_NAME_ROWS) {
        JsonArray *rows = json_object_get_array_member (pj, "rows");
        gint64 len = json_array_get_int_element (json_object_get_array_member (pj, "shape"), 0);
        g_assert_cmpint (json_array_get_int_element (rows, 0), ==, row);
        g_assert_cmpint (json_array_get_int_element (rows, 1), ==, row + len);
        row += len;
      }
      n_parts++;
    }
  }
  g_assert_cmpuint (n_parts, ==, 1264);
  /* metadata-only stores: official validates; diffusers converts to the same shapes */
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) off = hv_store_new ();
  g_assert_true (hv_store_add_manifest (off, path, FALSE, &err));
  g_assert_true (hv_store_is_metadata_only (off));
  g_assert_cmpuint (hv_store_n_params (off), ==, G_GUINT64_CONSTANT (12821012544));
  HvDitShape g;
  g_assert_true (hv_dit_shape_derive (off, path, &g, &err));
  g_assert_cmpint (g.heads, ==, 24);
  g_assert_cmpint (g.head_dim, ==, 128);
  g_assert_cmpint (g.n_double, ==, 20);
  g_assert_cmpint (g.n_single, ==, 40);
  g_assert_true (hv_dit_validate (off, &g, &err));
  HvStore *dif = hv_store_new ();
  g_assert_true (hv_store_add_manifest (dif, path, TRUE, &err));
  g_assert_cmpuint (hv_store_n_tensors (dif), ==, 1264);
  HvDitNames kind;
  g_autoptr(HvStore) conv = hv_dit_store_to_official (dif, &kind, &err);
  g_assert_no_error (err);
  g_assert_cmpint (kind, ==, HV_DIT_NAMES_DIFFUSERS);
  const char **names = hv_store_names (off);
  for (guint i = 0; names[i]; i++)
    g_assert_true (hv_tensor_same_shape (hv_store_get (off, names[i]), hv_store_get (conv, names[i])));
  g_assert_cmpuint (hv_store_n_tensors (conv), ==, 856);
}

/* a tiny official-name DiT as metadata, from the expected list */
static void
add_expected (const char *name, int nd, const int64_t *shape, gpointer data)
{
  hv_store_insert (data, name, hv_tensor_new_borrowed (HV_DTYPE_BF16, nd, shape, NULL, NULL, NULL), NULL);
}

static void
test_validate_report (void)
{
  HvDitShape g = { .hidden = 64, .heads = 2, .head_dim = 32, .mlp_hidden = 256, .refiner_mlp_hidden = 256,
                   .n_double = 2, .n_single = 2, .n_refiner = 2, .in_channels = 16, .out_channels = 16,
                   .patch = { 1, 2, 2 }, .text_dim = 64, .text_dim_2 = 32, .freq_dim = 256, .guidance_embed = TRUE };
  g_autoptr(HvStore) s = hv_store_new ();
  hv_dit_expected (&g, add_expected, s);
  g_assert_cmpuint (hv_store_n_tensors (s), ==, 120);
  g_autoptr(GError) err = NULL;
  HvDitShape d;
  g_assert_true (hv_dit_shape_derive (s, NULL, &d, &err));
  g_assert_cmpint (d.heads, ==, 2);
  g_assert_true (hv_dit_validate (s, &d, &err));
  /* two missing, one unexpected, one mis-shaped, one int tensor: all in one message */
  hv_tensor_free (hv_store_take (s, "double_blocks.1.txt_mlp.fc2.bias"));
  hv_tensor_free (hv_store_take (s, "single_blocks.0.k_norm.weight"));
  hv_store_insert (s, "double_blocks.0.extra.weight", hv_tensor_new_borrowed (HV_DTYPE_BF16, 1, (int64_t[]) { 3 }, NULL, NULL, NULL), NULL);
  HvTensor *t = hv_store_take (s, "final_layer.linear.bias");
  t->shape[0] = 65;
  hv_store_insert (s, "final_layer.linear.bias", t, NULL);
  hv_store_get_mutable (s, "time_in.mlp.0.bias")->dtype = HV_DTYPE_I32;
  g_assert_false (hv_dit_validate (s, &d, &err));
  g_test_message ("%s", err->message);
  static const char *const must[] = { "double_blocks.1.txt_mlp.fc2.bias", "single_blocks.0.k_norm.weight",
                                      "double_blocks.0.extra.weight", "final_layer.linear.bias is [65]",
                                      "time_in.mlp.0.bias has dtype i32", "2 missing", "1 unexpected" };
  for (guint i = 0; i < G_N_ELEMENTS (must); i++)
    g_assert_nonnull (strstr (err->message, must[i]));
}

static void
test_names_convert_errors (void)
{
  /* diffusers store with a missing k part, and parts of different dtypes */
  g_autoptr(HvStore) s = hv_store_new ();
  const int64_t sh[2] = { 4, 4 };
  hv_store_insert (s, "x_embedder.proj.weight", hv_tensor_new (HV_DTYPE_BF16, 2, sh), NULL);
  hv_store_insert (s, "transformer_blocks.0.attn.to_q.weight", hv_tensor_new (HV_DTYPE_BF16, 2, sh), NULL);
  hv_store_insert (s, "transformer_blocks.0.attn.to_v.weight", hv_tensor_new (HV_DTYPE_BF16, 2, sh), NULL);
  hv_store_insert (s, "transformer_blocks.0.attn.add_q_proj.weight", hv_tensor_new (HV_DTYPE_BF16, 2, sh), NULL);
  hv_store_insert (s, "transformer_blocks.0.attn.add_k_proj.weight", hv_tensor_new (HV_DTYPE_F32, 2, sh), NULL);
  hv_store_insert (s, "transformer_blocks.0.attn.add_v_proj.weight", hv_tensor_new (HV_DTYPE_BF16, 2, sh), NULL);
  g_autoptr(GError) err = NULL;
  g_assert_null (hv_dit_store_to_official (g_steal_pointer (&s), NULL, &err));
  g_test_message ("%s", err->message);
  g_assert_nonnull (strstr (err->message, "transformer_blocks.0.attn.to_k.weight"));
  g_assert_nonnull (strstr (err->message, "double_blocks.0.txt_attn_qkv.weight"));
  g_clear_error (&err);
  /* values: q,k,v rows concatenated; final adaLN halves swapped; prefix stripped */
  g_autoptr(HvStore) v = hv_store_new ();
  const int64_t s2[1] = { 2 };
  static const char *const qkv[] = { "q", "k", "v" };
  for (int i = 0; i < 3; i++) {
    HvTensor *t = hv_tensor_new_f32 (1, s2);
    ((float *) t->data)[0] = (float) i;
    ((float *) t->data)[1] = (float) i + 0.5f;
    g_autofree char *n = g_strdup_printf ("model.diffusion_model.transformer_blocks.0.attn.to_%s.bias", qkv[i]);
    hv_store_insert (v, n, t, NULL);
  }
  HvTensor *no = hv_tensor_new_f32 (1, (int64_t[]) { 4 });
  for (int i = 0; i < 4; i++)
    ((float *) no->data)[i] = (float) i;
  hv_store_insert (v, "model.diffusion_model.norm_out.linear.bias", no, NULL);
  g_autoptr(HvStore) o = hv_dit_store_to_official (g_steal_pointer (&v), NULL, &err);
  g_assert_no_error (err);
  const float *f = hv_store_get (o, "double_blocks.0.img_attn_qkv.bias")->data;
  g_assert_cmpint (hv_store_get (o, "double_blocks.0.img_attn_qkv.bias")->shape[0], ==, 6);
  g_assert_cmpfloat (f[0], ==, 0.f);
  g_assert_cmpfloat (f[3], ==, 1.5f);
  g_assert_cmpfloat (f[5], ==, 2.5f);
  const float *a = hv_store_get (o, "final_layer.adaLN_modulation.1.bias")->data;
  g_assert_cmpfloat (a[0], ==, 2.f);
  g_assert_cmpfloat (a[3], ==, 1.f);
}

/* ---- fp8 ---------------------------------------------------------------------------------------- */

static void
test_fp8_map (void)
{
  const int64_t sh[2] = { 2, 2 }, one[1] = { 1 };
  g_autoptr(HvStore) w = hv_store_new ();
  hv_store_insert (w, "double_blocks.0.img_mlp.fc1.weight", hv_tensor_new (HV_DTYPE_F8_E4M3, 2, sh), NULL);
  hv_store_insert (w, "double_blocks.0.img_mlp.fc2.weight", hv_tensor_new (HV_DTYPE_F8_E4M3, 2, sh), NULL);
  hv_store_insert (w, "double_blocks.0.img_mlp.fc1.bias", hv_tensor_new (HV_DTYPE_BF16, 1, one), NULL);
  g_autoptr(HvStore) m = hv_store_new ();
  HvTensor *s1 = hv_tensor_new_f32 (0, NULL);
  *(float *) s1->data = 0.125f;
  hv_store_insert (m, "double_blocks.0.img_mlp.fc1", s1, NULL);
  guint n = 0;
  g_autoptr(GError) err = NULL;
  /* fc2 has no scale */
  g_assert_false (hv_store_apply_fp8_map (w, m, &n, &err));
  g_assert_nonnull (strstr (err->message, "double_blocks.0.img_mlp.fc2.weight"));
  g_clear_error (&err);
  HvTensor *s2 = hv_tensor_new_f32 (0, NULL);
  *(float *) s2->data = 0.5f;
  hv_store_insert (m, "double_blocks.0.img_mlp.fc2", s2, NULL);
  g_assert_true (hv_store_apply_fp8_map (w, m, &n, &err));
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpfloat (hv_store_get (w, "double_blocks.0.img_mlp.fc1.weight")->scale, ==, 0.125f);
  /* a scale for a missing weight, one for a bf16 tensor, a negative one: all reported */
  HvTensor *s3 = hv_tensor_new_f32 (0, NULL), *s4 = hv_tensor_new_f32 (0, NULL), *s5 = hv_tensor_new_f32 (0, NULL);
  *(float *) s3->data = 1.f;
  *(float *) s4->data = 1.f;
  *(float *) s5->data = -1.f;
  hv_store_insert (m, "single_blocks.9.linear1", s3, NULL);
  hv_store_insert (m, "double_blocks.0.img_mlp.fc1.bias", s4, NULL);
  hv_tensor_free (hv_store_take (m, "double_blocks.0.img_mlp.fc2"));
  hv_store_insert (m, "double_blocks.0.img_mlp.fc2", s5, NULL);
  g_assert_false (hv_store_apply_fp8_map (w, m, &n, &err));
  g_test_message ("%s", err->message);
  g_assert_nonnull (strstr (err->message, "single_blocks.9.linear1"));
  g_assert_nonnull (strstr (err->message, "fc1.bias' is bf16"));
  g_assert_nonnull (strstr (err->message, "not a positive"));
  /* the map beside a file */
  g_autoptr(GBytes) e = g_bytes_new ("x", 1);
  g_autofree char *wp = write_tmp ("fp8/m_fp8.pt", e);
  g_autofree char *none = hv_fp8_map_path_for (wp);
  g_assert_null (none);
  g_autofree char *mp = write_tmp ("fp8/m_fp8_map.safetensors", e);
  g_autofree char *found = hv_fp8_map_path_for (wp);
  g_assert_cmpstr (found, ==, mp);
  g_autofree char *mp2 = write_tmp ("fp8/m_fp8_map.pt", e);
  g_autofree char *found2 = hv_fp8_map_path_for (wp);
  g_assert_cmpstr (found2, ==, mp2);   /* same format first */
}

/* ---- layouts --------------------------------------------------------------------------------- */

static void
touch (const char *rel)
{
  g_autoptr(GBytes) e = g_bytes_new ("{}", 2);
  g_free (write_tmp (rel, e));
}

static void
test_layout (void)
{
  g_autoptr(GError) err = NULL;
  /* official */
  touch ("off/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt");
  touch ("off/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt");
  touch ("off/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8_map.pt");
  touch ("off/hunyuan-video-t2v-720p/vae/config.json");
  touch ("off/hunyuan-video-t2v-720p/vae/pytorch_model.pt");
  touch ("off/text_encoder/config.json");
  touch ("off/text_encoder_2/config.json");
  g_autofree char *off = g_build_filename (tmpdir, "off", NULL);
  g_autoptr(HvModelPaths) p = hv_model_paths_detect (off, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpint (p->layout, ==, HV_LAYOUT_OFFICIAL);
  g_assert_true (g_str_has_suffix (p->dit, "transformers/mp_rank_00_model_states.pt"));
  g_assert_null (p->dit_fp8_map);
  g_assert_true (g_str_has_suffix (p->vae_weights, "vae/pytorch_model.pt"));
  g_assert_true (g_str_has_suffix (p->text_encoder, "off/text_encoder"));
  g_assert_true (g_str_has_suffix (p->text_encoder_2, "off/text_encoder_2"));
  g_autoptr(HvModelPaths) p8 = hv_model_paths_detect (off, HV_LAYOUT_PREFER_FP8, &err);
  g_assert_true (g_str_has_suffix (p8->dit, "mp_rank_00_model_states_fp8.pt"));
  g_assert_true (g_str_has_suffix (p8->dit_fp8_map, "mp_rank_00_model_states_fp8_map.pt"));
  /* the model folder itself */
  g_autofree char *inner = g_build_filename (off, "hunyuan-video-t2v-720p", NULL);
  g_autoptr(HvModelPaths) pi = hv_model_paths_detect (inner, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpint (pi->layout, ==, HV_LAYOUT_OFFICIAL);
  g_assert_true (g_str_has_suffix (pi->text_encoder, "off/text_encoder"));
  /* diffusers, sharded transformer */
  touch ("dif/model_index.json");
  touch ("dif/transformer/config.json");
  touch ("dif/transformer/diffusion_pytorch_model-00001-of-00002.safetensors");
  touch ("dif/transformer/diffusion_pytorch_model-00002-of-00002.safetensors");
  touch ("dif/transformer/diffusion_pytorch_model.safetensors.index.json");
  touch ("dif/vae/config.json");
  touch ("dif/vae/diffusion_pytorch_model.safetensors");
  touch ("dif/text_encoder/model.safetensors");
  touch ("dif/text_encoder_2/model.safetensors");
  touch ("dif/tokenizer/tokenizer.json");
  touch ("dif/tokenizer_2/vocab.json");
  g_autofree char *dif = g_build_filename (tmpdir, "dif", NULL);
  g_autoptr(HvModelPaths) pd = hv_model_paths_detect (dif, 0, &err);
  g_assert_no_error (err);
  g_assert_cmpint (pd->layout, ==, HV_LAYOUT_DIFFUSERS);
  g_assert_true (g_str_has_suffix (pd->dit, "transformer/diffusion_pytorch_model.safetensors.index.json"));
  g_assert_true (g_str_has_suffix (pd->dit_config, "transformer/config.json"));
  g_assert_true (g_str_has_suffix (pd->vae_weights, "vae/diffusion_pytorch_model.safetensors"));
  g_assert_nonnull (pd->tokenizer);
  g_assert_nonnull (pd->tokenizer_2);
  /* single file; unknown folder; shards without an index */
  g_autofree char *single = g_build_filename (off, "hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt", NULL);
  g_autoptr(HvModelPaths) ps = hv_model_paths_detect (single, 0, &err);
  g_assert_cmpint (ps->layout, ==, HV_LAYOUT_SINGLE_FILE);
  g_assert_nonnull (ps->dit_fp8_map);
  touch ("unknown/readme.txt");
  g_autofree char *unk = g_build_filename (tmpdir, "unknown", NULL);
  g_assert_null (hv_model_paths_detect (unk, 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_NOT_FOUND);
  g_clear_error (&err);
  touch ("shardsonly/model_index.json");
  touch ("shardsonly/transformer/a.safetensors");
  touch ("shardsonly/transformer/b.safetensors");
  g_autofree char *so = g_build_filename (tmpdir, "shardsonly", NULL);
  g_assert_null (hv_model_paths_detect (so, 0, &err));
  g_assert_nonnull (strstr (err->message, "index.json"));
}

static gboolean
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_autoptr(GDir) d = g_dir_open (path, 0, NULL);
    const char *e;
    while (d && (e = g_dir_read_name (d))) {
      g_autofree char *c = g_build_filename (path, e, NULL);
      rm_rf (c);
    }
    return g_rmdir (path) == 0;
  }
  return g_unlink (path) == 0;
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("hv-loaders-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/loaders/safetensors/valid", test_st_valid);
  g_test_add_func ("/loaders/safetensors/corrupt", test_st_corrupt);
  g_test_add_func ("/loaders/index", test_index);
  g_test_add_func ("/loaders/pt/valid", test_pt_valid);
  g_test_add_func ("/loaders/pt/hostile", test_pt_hostile);
  g_test_add_func ("/loaders/pt/corrupt-pickle", test_pt_corrupt_pickle);
  g_test_add_func ("/loaders/pt/corrupt-tensor", test_pt_corrupt_tensor);
  g_test_add_func ("/loaders/pt/corrupt-zip", test_pt_corrupt_zip);
  g_test_add_func ("/loaders/pt/bombs", test_pt_bombs);
  g_test_add_func ("/loaders/pt/fixtures", test_pt_fixtures);
  g_test_add_func ("/loaders/names/full-manifest", test_names_full_manifest);
  g_test_add_func ("/loaders/names/convert", test_names_convert_errors);
  g_test_add_func ("/loaders/validate/report", test_validate_report);
  g_test_add_func ("/loaders/fp8/map", test_fp8_map);
  g_test_add_func ("/loaders/layout", test_layout);
  int rc = g_test_run ();
  rm_rf (tmpdir);
  g_free (tmpdir);
  return rc;
}
