#include "hv-error.h"

G_DEFINE_QUARK (hv-error-quark, hv_error)
