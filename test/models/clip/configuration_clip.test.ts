// CLIP configs as transformers writes them: a full CLIPConfig.to_dict() with PretrainedConfig's generic keys
// (often null) in both towers and at the top, legacy *_config_dict towers, null towers, and real vision configs
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, randn } from "../../../engine/index.ts";
import { ConfigError } from "../../../engine/errors.ts";
import { withInitGenerator } from "../../../models/nn/module.ts";
import {
  CLIPModel,
  CLIPVisionModel,
  CLIP_TEXT_DEFAULTS,
  CLIP_VISION_DEFAULTS,
  TINY_CLIP_TEXT,
  TINY_CLIP_VISION,
  parseCLIPConfig,
  parseCLIPTextConfig,
  parseCLIPVisionConfig,
} from "../../../models/clip/index.ts";

/** PretrainedConfig's attributes with the values transformers 4.x writes for a config built from defaults. */
function pretrainedConfigDict(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    return_dict: true,
    output_hidden_states: false,
    output_attentions: false,
    torchscript: false,
    torch_dtype: null,
    use_bfloat16: false,
    tf_legacy_loss: false,
    pruned_heads: {},
    tie_word_embeddings: true,
    chunk_size_feed_forward: 0,
    is_encoder_decoder: false,
    is_decoder: false,
    cross_attention_hidden_size: null,
    add_cross_attention: false,
    tie_encoder_decoder: false,
    max_length: 20,
    min_length: 0,
    do_sample: false,
    early_stopping: false,
    num_beams: 1,
    num_beam_groups: 1,
    diversity_penalty: 0.0,
    temperature: 1.0,
    top_k: 50,
    top_p: 1.0,
    typical_p: 1.0,
    repetition_penalty: 1.0,
    length_penalty: 1.0,
    no_repeat_ngram_size: 0,
    encoder_no_repeat_ngram_size: 0,
    bad_words_ids: null,
    num_return_sequences: 1,
    output_scores: false,
    return_dict_in_generate: false,
    forced_bos_token_id: null,
    forced_eos_token_id: null,
    remove_invalid_values: false,
    exponential_decay_length_penalty: null,
    suppress_tokens: null,
    begin_suppress_tokens: null,
    architectures: null,
    finetuning_task: null,
    id2label: { "0": "LABEL_0", "1": "LABEL_1" },
    label2id: { LABEL_0: 0, LABEL_1: 1 },
    tokenizer_class: null,
    prefix: null,
    bos_token_id: null,
    pad_token_id: null,
    eos_token_id: null,
    sep_token_id: null,
    decoder_start_token_id: null,
    task_specific_params: null,
    problem_type: null,
    _name_or_path: "",
    transformers_version: "4.38.2",
    _attn_implementation_autoset: true,
    ...over,
  };
}

/** `CLIPConfig(text_config=..., vision_config=..., projection_dim=16).to_dict()` as transformers writes it. */
function transformersClipConfig(): Record<string, unknown> {
  const text = {
    ...pretrainedConfigDict({ bos_token_id: 0, pad_token_id: 1, eos_token_id: 2 }),
    vocab_size: 1000,
    hidden_size: 32,
    intermediate_size: 37,
    projection_dim: 16,
    dropout: 0.0,
    num_hidden_layers: 5,
    num_attention_heads: 4,
    max_position_embeddings: 77,
    layer_norm_eps: 1e-5,
    hidden_act: "quick_gelu",
    initializer_range: 0.02,
    initializer_factor: 1.0,
    attention_dropout: 0.0,
    model_type: "clip_text_model",
  };
  const vision = {
    ...pretrainedConfigDict(),
    hidden_size: 32,
    intermediate_size: 37,
    projection_dim: 16,
    dropout: 0.0,
    num_hidden_layers: 5,
    num_attention_heads: 4,
    num_channels: 3,
    patch_size: 2,
    image_size: 30,
    initializer_range: 0.02,
    initializer_factor: 1.0,
    attention_dropout: 0.0,
    layer_norm_eps: 1e-5,
    hidden_act: "quick_gelu",
    model_type: "clip_vision_model",
  };
  return {
    ...pretrainedConfigDict({ architectures: ["CLIPModel"] }),
    text_config: text,
    vision_config: vision,
    projection_dim: 16,
    logit_scale_init_value: 2.6592,
    initializer_factor: 1.0,
    model_type: "clip",
    _commit_hash: null,
  };
}

test("a full CLIPConfig.to_dict() (generic keys, nulls, token ids in the vision tower) parses to the towers' values", () => {
  const c = parseCLIPConfig(transformersClipConfig());
  assert.equal(c.text_config, { ...TINY_CLIP_TEXT, projection_dim: 16 });
  assert.equal(c.vision_config, { ...TINY_CLIP_VISION, projection_dim: 16 });
  assert.is(c.projection_dim, 16);
  assert.is(c.logit_scale_init_value, 2.6592);
  // the text tower owns its token ids: eos 2 (legacy pooling) is read, not skipped
  assert.is(c.text_config.eos_token_id, 2);
  // each tower alone, and a tower picked out of the CLIPModel config
  const raw = transformersClipConfig();
  assert.equal(parseCLIPVisionConfig(raw.vision_config as Record<string, unknown>), c.vision_config);
  assert.equal(parseCLIPTextConfig(raw.text_config as Record<string, unknown>), c.text_config);
  assert.equal(parseCLIPVisionConfig(raw), c.vision_config);
  assert.equal(parseCLIPTextConfig(raw), c.text_config);
});

test("only unknown model keys are rejected, in a tower or at the top", () => {
  const withVision = (extra: Record<string, unknown>) => {
    const raw = transformersClipConfig();
    raw.vision_config = { ...(raw.vision_config as object), ...extra };
    return raw;
  };
  assert.throws(
    () => parseCLIPConfig(withVision({ bogus_width: 3 })),
    (e: Error) => e instanceof ConfigError && /CLIPVisionConfig: unknown config key "bogus_width"/.test(e.message),
  );
  assert.throws(
    () => parseCLIPConfig({ ...transformersClipConfig(), hidden_sise: 3 }),
    (e: Error) => e instanceof ConfigError && /CLIPConfig: unknown config key "hidden_sise"/.test(e.message),
  );
  assert.throws(
    () => parseCLIPVisionConfig({ ...pretrainedConfigDict(), vocab_size: 49408 }),
    (e: Error) => e instanceof ConfigError && /vocab_size/.test(e.message),
  );
  // generic keys with set values are skipped as well (v5's dtype, num_labels, use_cache...)
  const v = parseCLIPVisionConfig({
    dtype: "float16",
    num_labels: 3,
    bos_token_id: 49406,
    eos_token_id: 49407,
    pad_token_id: 1,
    _commit_hash: "abc",
    model_type: "clip_vision_model",
  });
  assert.equal(v, CLIP_VISION_DEFAULTS);
  // model values are still checked
  assert.throws(
    () => parseCLIPConfig(withVision({ image_size: 31 })),
    (e: Error) => e instanceof ConfigError && /image_size/.test(e.message),
  );
});

test("null towers take the defaults; legacy text_config_dict / vision_config_dict replace their tower as transformers does", () => {
  const c = parseCLIPConfig({
    ...pretrainedConfigDict(),
    text_config: null,
    vision_config: null,
    model_type: "clip",
    text_config_dict: null,
    vision_config_dict: null,
  });
  assert.equal(c.text_config, CLIP_TEXT_DEFAULTS);
  assert.equal(c.vision_config, CLIP_VISION_DEFAULTS);
  const raw = transformersClipConfig();
  raw.text_config_dict = { hidden_size: 64, num_attention_heads: 2, projection_dim: 16 };
  const d = parseCLIPConfig(raw);
  assert.equal(d.text_config, { ...CLIP_TEXT_DEFAULTS, hidden_size: 64, num_attention_heads: 2, projection_dim: 16 });
  assert.equal(parseCLIPTextConfig(raw), d.text_config);
  assert.throws(
    () => parseCLIPConfig({ text_config: [1] }),
    (e: Error) => e instanceof ConfigError && /"text_config" must be an object/.test(e.message),
  );
});

test("fromPretrained: CLIPModel and CLIPVisionModel folders whose config.json transformers wrote", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clip-config-"));
  try {
    const m = withInitGenerator(new Generator(3), () =>
      CLIPModel.fromConfig({ text_config: TINY_CLIP_TEXT, vision_config: TINY_CLIP_VISION, projection_dim: 16 }),
    );
    m.save(dir);
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(transformersClipConfig(), null, 2));
    const back = CLIPModel.fromPretrained(dir);
    assert.equal(back.config.vision_config, m.config.vision_config);
    const px = randn([1, 3, 30, 30], { generator: new Generator(1) });
    assert.equal(Array.from(back.getImageFeatures(px).data), Array.from(m.getImageFeatures(px).data));
    // a standalone vision config (CLIPVisionConfig.to_dict(): token ids null) loads the vision tower
    const vision = transformersClipConfig().vision_config as Record<string, unknown>;
    fs.writeFileSync(
      path.join(dir, "config.json"),
      JSON.stringify({ ...vision, architectures: ["CLIPVisionModel"] }, null, 2),
    );
    const v = CLIPVisionModel.fromPretrained(dir);
    assert.equal(
      Array.from(v.forward(px).pooler_output.data),
      Array.from(m.vision_model.forward(px).pooler_output.data),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
