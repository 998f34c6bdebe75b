/* hf_config.h: the one place that knows how a Hugging Face config.json spells RoPE across
 * transformers versions, shared by the compiler (mlkc --config) and the runtime's config check.
 *
 * Before transformers 5, a config.json says `"rope_theta": T` and `"rope_scaling": null` or
 * `{"rope_type": "llama3", "factor": ...}` at its top level; from 5 on, `save_pretrained` writes
 * one object instead, `"rope_parameters": {"rope_theta": T, "rope_type": "default" | "llama3" |
 * ..., "factor": ...}`. Both readers look for the older keys; mlk_hf_config_normalize gives a
 * file of the newer layout those keys (rope_theta, and rope_scaling unless the type is
 * "default"), taken from rope_parameters, without replacing a key the file already has. It only
 * adds keys to the parsed tree: nothing is written back. Header-only, over Jansson. */
#ifndef MLK_HF_CONFIG_H
#define MLK_HF_CONFIG_H

#include <string.h>

#include <jansson.h>

static inline void mlk_hf_config_normalize(json_t *root) {
  json_t *rp = json_object_get(root, "rope_parameters");
  if (!json_is_object(rp))
    return;
  json_t *theta = json_object_get(rp, "rope_theta");
  if (theta && !json_object_get(root, "rope_theta"))
    json_object_set(root, "rope_theta", theta);
  json_t *type = json_object_get(rp, "rope_type");
  const char *tn = json_is_string(type) ? json_string_value(type) : NULL;
  json_t *scaling = json_object_get(root, "rope_scaling");
  if (tn && strcmp(tn, "default") && (!scaling || json_is_null(scaling)))
    json_object_set(root, "rope_scaling", rp);
}

#endif
