#!/bin/sh
# Builds an official and a diffusers model folder from the tiny fixture models (symlinks) and
# checks that `hyvideo inspect` finds every part and accepts both (exit 0), then breaks each
# folder (a missing part) and checks that it is rejected (exit 1, not a crash).
#   test-inspect-layouts.sh HYVIDEO FIXTURES_DIR TOKENIZERS_DIR
set -u
cli=$1 fx=$2 tok=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() {   # expect STATUS ARGS...
  want=$1; shift
  "$cli" inspect "$@" > "$tmp/out" 2>&1
  got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: hyvideo inspect $* exited $got, expected $want"; cat "$tmp/out"; fail=1
  else
    echo "ok: hyvideo inspect $* -> $got"; grep -E '^(layout|result)|problem' "$tmp/out" | head -5
  fi
}

o=$tmp/official
mkdir -p "$o/hunyuan-video-t2v-720p/transformers" "$o/hunyuan-video-t2v-720p/vae"
ln -s "$fx/dit/dit_weights.pt" "$o/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt"
ln -s "$fx/dit/dit_weights_fp8.pt" "$o/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8.pt"
ln -s "$fx/dit/dit_weights_fp8_map.pt" "$o/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states_fp8_map.pt"
ln -s "$fx/vae/config.json" "$o/hunyuan-video-t2v-720p/vae/config.json"
ln -s "$fx/vae/vae_weights.pt" "$o/hunyuan-video-t2v-720p/vae/pytorch_model.pt"
ln -s "$fx/text/text_encoder" "$o/text_encoder"
ln -s "$fx/text/text_encoder_2" "$o/text_encoder_2"
expect 0 "$o"
expect 0 --prefer-fp8 "$o"
expect 0 "$o/hunyuan-video-t2v-720p"

d=$tmp/diffusers
mkdir -p "$d/transformer" "$d/vae"
echo '{"_class_name": "HunyuanVideoPipeline"}' > "$d/model_index.json"
echo '{"num_attention_heads": 2, "attention_head_dim": 32, "num_layers": 2, "num_single_layers": 2, "num_refiner_layers": 2}' \
  > "$d/transformer/config.json"
ln -s "$fx/dit/dit_weights_diffusers.safetensors" "$d/transformer/diffusion_pytorch_model.safetensors"
ln -s "$fx/vae/config.json" "$d/vae/config.json"
ln -s "$fx/vae/vae_weights.safetensors" "$d/vae/diffusion_pytorch_model.safetensors"
ln -s "$fx/text/text_encoder_llamamodel" "$d/text_encoder"
ln -s "$fx/text/text_encoder_2" "$d/text_encoder_2"
ln -s "$tok/llama3" "$d/tokenizer"
ln -s "$tok/clip" "$d/tokenizer_2"
expect 0 "$d"

# broken: a config that promises more blocks than the file has, a missing part
echo '{"num_attention_heads": 2, "attention_head_dim": 32, "num_layers": 3}' > "$d/transformer/config.json"
expect 1 "$d"
rm "$o/text_encoder_2"
expect 1 "$o"
exit $fail
