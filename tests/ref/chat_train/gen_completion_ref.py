#!/usr/bin/env python3
"""gen_completion_ref.py — goldens for prompt/completion data rendered with a chat template.

peftlua trains a {"prompt", "completion"} record of a model that has a chat template as the
conversation [user: prompt, assistant: completion] (src/data/data_build.c, completion_chat). This
script renders the same records with transformers' tokenizer.apply_chat_template (the tool TRL
and mlx-lm use) for SmolLM2-135M-Instruct's template (the ChatML string of
tests/ref/chat/gen_chat_ref.py, checked there against the GGUF) and writes
tests/ref/chat_train/completion_ref.json: for each record the full text and the prompt part
(add_generation_prompt=True on the user turn alone), so the completion's text is the rest.
tests/lua/test_cli.lua tokenizes these texts with the model's tokenizer and compares them with
what peft.data.load built.

Regenerate (not needed in CI): python3 -m pip install transformers jinja2 tokenizers;
python3 tests/ref/chat_train/gen_completion_ref.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'chat'))
from gen_chat_ref import SMOLLM2  # noqa: E402

import transformers  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

RECORDS = [
    {"prompt": "What is 2+2?", "completion": "4"},
    {"prompt": "Translate to French: good morning", "completion": "Bonjour"},
    {"prompt": "List three colours.\nOne per line.", "completion": "red\ngreen\nblue"},
    {"prompt": "Café ☕ or tea?", "completion": " Tea, with  two spaces."},
    {"prompt": "Call the weather tool for Paris.",
     "completion": "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}"},
]


def main():
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
        bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<unk>")
    tok.chat_template = SMOLLM2
    out = []
    for r in RECORDS:
        conv = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        full = tok.apply_chat_template(conv, tokenize=False)
        prefix = tok.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
        assert full.startswith(prefix), (full, prefix)
        out.append({"prompt": r["prompt"], "completion": r["completion"], "text": full, "prompt_text": prefix})
    doc = {"generator": "transformers %s PreTrainedTokenizerFast.apply_chat_template" % transformers.__version__,
           "template": "SmolLM2-135M-Instruct (ChatML)", "records": out}
    with open(os.path.join(HERE, 'completion_ref.json'), 'w', encoding='utf-8') as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write('\n')
    with open(os.path.join(HERE, 'completion.jsonl'), 'w', encoding='utf-8') as f:
        for r in RECORDS:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')


if __name__ == '__main__':
    main()
