/* hv-pickle.h — (loader-internal) a restricted unpickler for torch.save's data.pkl.
 *
 * It interprets the pickle opcodes a state dict uses (protocols 2-5) into plain values and
 * never imports or calls anything: a GLOBAL is looked up in a fixed allow-list (OrderedDict,
 * torch's tensor/parameter rebuild functions, storage types, dtypes) and anything else is an
 * error naming it. REDUCE of an allowed function only records the call (PV_CALL, args kept);
 * hv-pt.c turns the recorded calls into tensors. Stack, marks and memo are bounded; the
 * machine has no recursion; every read is bounds-checked. */
#pragma once
#include "hv-blob.h"

G_BEGIN_DECLS

typedef enum {
  PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES,
  PV_TUPLE, PV_LIST, PV_DICT,       /* items: elements, or key,value,key,value... */
  PV_GLOBAL,                        /* an allowed global: glob (and dtype) */
  PV_CALL,                          /* glob(items...) recorded by REDUCE */
  PV_PERSID,                        /* persistent id: items of the pid tuple */
} HvPvKind;

typedef enum {
  HV_G_ORDERED_DICT,
  HV_G_REBUILD_TENSOR,       /* torch._utils._rebuild_tensor(storage, offset, size, stride) */
  HV_G_REBUILD_TENSOR_V2,    /* (storage, offset, size, stride, requires_grad, hooks[, metadata]) */
  HV_G_REBUILD_TENSOR_V3,    /* (..., hooks, dtype[, metadata]) with an untyped storage */
  HV_G_REBUILD_PARAMETER,    /* (tensor, requires_grad, hooks) */
  HV_G_REBUILD_PARAMETER_STATE, /* (tensor, requires_grad, hooks, state) */
  HV_G_TYPED_STORAGE,        /* torch.BFloat16Storage etc.: dtype set */
  HV_G_UNTYPED_STORAGE,      /* torch.UntypedStorage / torch.storage.UntypedStorage */
  HV_G_DTYPE,                /* torch.bfloat16 etc.: dtype set */
} HvPickleGlobal;

typedef struct _HvPv HvPv;
struct _HvPv {
  HvPvKind kind;
  HvPickleGlobal glob;
  HvDType dtype;               /* HV_G_TYPED_STORAGE, HV_G_DTYPE */
  gint64 i;                    /* BOOL, INT */
  double f;
  char *s;                     /* STR, BYTES (NUL-terminated copy), GLOBAL: "module.name" */
  gsize len;
  GPtrArray *items;            /* TUPLE, LIST, DICT, CALL, PERSID */
};

typedef struct _HvPickle HvPickle;

/* Runs the pickle in `data` (len bytes). Returns the machine (which owns every value) or NULL
 * with an error naming `label`. */
HvPickle *hv_pickle_run (const char *label, const guint8 *data, gsize len, GError **error);
HvPv     *hv_pickle_result (HvPickle *p);
void      hv_pickle_free (HvPickle *p);

/* Value of `key` in a PV_DICT, or NULL. */
HvPv     *hv_pv_dict_get (HvPv *dict, const char *key);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvPickle, hv_pickle_free)

G_END_DECLS
