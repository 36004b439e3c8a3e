/* hv-error.h — the engine's GError domain.
 * Every fallible public call takes a GError ** and fills it with one of these codes and a
 * message a user can act on (which file, which tensor, what was expected). */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define HV_ERROR (hv_error_quark ())
GQuark hv_error_quark (void);

typedef enum {
  HV_ERROR_FAILED,        /* anything not covered below */
  HV_ERROR_NOT_FOUND,     /* a file, folder, tensor or config key is missing */
  HV_ERROR_INVALID,       /* an argument or setting is out of range */
  HV_ERROR_CORRUPT,       /* a file is truncated, inconsistent or hostile */
  HV_ERROR_UNSUPPORTED,   /* well-formed but not something we handle (dtype, opcode, layout) */
  HV_ERROR_SHAPE,         /* a tensor has the wrong shape or dtype for the model */
  HV_ERROR_NO_MEMORY,     /* an allocation (host or device) failed */
  HV_ERROR_DEVICE,        /* a CUDA / cuBLAS call failed or no device is present */
  HV_ERROR_CANCELLED,     /* the cancel flag was raised */
} HvError;

G_END_DECLS
