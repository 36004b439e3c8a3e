/* hv-text-model.h — what the Llama and CLIP text encoders share: finding a model's weights
 * and config.json, reading config.json, fetching checked weights, the key-padding mask.
 * One copy so that both encoders accept the same layouts and report problems alike. */
#pragma once
#include "hv-backend.h"
#include "hv-tensor.h"
#include "loaders/hv-store.h"
#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Opens a text-encoder checkpoint. `path` is a folder holding config.json and the weights
 * (model.safetensors, a *.safetensors.index.json shard set, or pytorch_model.bin[.index.json]),
 * or a weights file with config.json beside it. Returns the store and sets *config_path
 * (g_free it). */
HvStore    *hv_text_model_open (const char *path, char **config_path, GError **error);

/* Parses config.json. *config: its "text_config" object when it has one (a Llava or
 * CLIPModel wrapper), else the top object; it lives as long as the returned parser. */
JsonParser *hv_text_config_parse (const char *config_json, JsonObject **config, GError **error);

/* The store's file for messages, or "(weights in memory)". */
const char *hv_text_store_name (HvStore *store);

/* Tensor prefix+name of `store`, checked for its shape (ndim 1: [d0], ndim 2: [d0, d1];
 * -1 = any size) and a float dtype, placed on `backend`. */
HvTensor   *hv_text_weight (HvStore *store, HvBackend *backend, const char *prefix,
                            const char *name, int ndim, int64_t d0, int64_t d1, GError **error);

/* The host u8 [B, L, L] attention table for key padding (query i may see key j iff
 * mask[b*L + j] != 0; the causal rule is applied by the attention op). NULL when mask is NULL
 * or marks no padding: no table is needed then. */
HvTensor   *hv_text_pad_allow (const int32_t *mask, int B, int L);

G_END_DECLS
